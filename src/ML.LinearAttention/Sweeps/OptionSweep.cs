using System.Diagnostics;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Sweeps;

/// <summary>
/// A small built-in hyper-parameter sweep over the estimator options, for machines without ML.NET AutoML: random or
/// grid search over the members that carry <c>[Range]</c>/<c>[Choice]</c> attributes (the same search space AutoML's
/// <c>SearchSpace&lt;TOptions&gt;</c> reads), each trial scored by k-fold cross-validation, with early stopping of the
/// sweep (no better trial for <see cref="SweepOptions.EarlyStoppingTrials"/> trials) and pruning of trials whose first
/// folds are all worse than the best trial's weakest fold.
/// <code>
/// var sweep = new OptionSweep&lt;TextClassificationOptions&gt;(mlContext, baseOptions,
///     o =&gt; mlContext.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
///              .Append(mlContext.Transforms.LinearAttention.TextClassification(o)),
///     SweepMetric.MicroAccuracy(), new SweepOptions { MaxTrials = 8, Folds = 3 });
/// var result = sweep.Run(data);   // result.BestOptions: refit on all data
/// </code>
/// </summary>
public sealed class OptionSweep<TOptions> where TOptions : LinearAttentionOptions
{
    private readonly MLContext _ml;
    private readonly TOptions _base;
    private readonly Func<TOptions, IEstimator<ITransformer>> _pipeline;
    private readonly SweepMetric _metric;
    private readonly SweepOptions _options;

    /// <param name="mlContext">Context of the trials (its log receives one line per trial).</param>
    /// <param name="baseOptions">Options every trial starts from (never changed; each trial gets a copy).</param>
    /// <param name="pipeline">Builds the pipeline of a trial from its options (label mapping, the estimator, ...).</param>
    /// <param name="metric">What to optimise, computed on each fold's scored held-out rows.</param>
    /// <param name="options">Strategy, trials, folds, parameters, early stopping.</param>
    public OptionSweep(MLContext mlContext, TOptions baseOptions, Func<TOptions, IEstimator<ITransformer>> pipeline, SweepMetric metric, SweepOptions? options = null)
    {
        _ml = mlContext ?? throw new ArgumentNullException(nameof(mlContext));
        _base = baseOptions ?? throw new ArgumentNullException(nameof(baseOptions));
        _pipeline = pipeline ?? throw new ArgumentNullException(nameof(pipeline));
        _metric = metric ?? throw new ArgumentNullException(nameof(metric));
        _options = options ?? new SweepOptions();
        if (_options.Folds < 2) throw new ArgumentOutOfRangeException(nameof(options), _options.Folds, "SweepOptions.Folds must be at least 2 (k-fold cross-validation).");
        if (_options.MaxTrials < 1) throw new ArgumentOutOfRangeException(nameof(options), _options.MaxTrials, "SweepOptions.MaxTrials must be at least 1.");
        Space = ResolveSpace();
    }

    /// <summary>The swept dimensions (attribute ranges, or the custom candidates of <see cref="SweepOptions.Candidates"/>).</summary>
    public IReadOnlyList<(SweepParameter Parameter, IReadOnlyList<object>? Candidates)> Space { get; }

    private IReadOnlyList<(SweepParameter, IReadOnlyList<object>?)> ResolveSpace()
    {
        var all = SweepParameter.Read(typeof(TOptions)).ToDictionary(p => p.Name);
        var names = _options.Parameters ?? SweepOptions.DefaultParameters;
        var result = new List<(SweepParameter, IReadOnlyList<object>?)>();
        foreach (var name in names)
        {
            if (!all.TryGetValue(name, out var p))
                throw new ArgumentException($"'{name}' is not a sweepable member of {typeof(TOptions).Name}; sweepable members (with [Range] or [Choice]): {string.Join(", ", all.Keys)}.", nameof(SweepOptions.Parameters));
            result.Add((p, _options.Candidates.TryGetValue(name, out var c) ? c : null));
        }
        foreach (var key in _options.Candidates.Keys.Where(k => !names.Contains(k)))
            throw new ArgumentException($"SweepOptions.Candidates names '{key}', which is not in SweepOptions.Parameters.", nameof(SweepOptions.Candidates));
        return result;
    }

    /// <summary>The values of every trial the strategy proposes, in order (before early stopping).</summary>
    public IReadOnlyList<Dictionary<string, object>> PlanTrials()
    {
        var rng = new Random(_options.Seed);
        var plans = new List<Dictionary<string, object>>();
        if (_options.Strategy == SweepStrategy.Grid)
        {
            IEnumerable<Dictionary<string, object>> product = new[] { new Dictionary<string, object>() };
            foreach (var (p, candidates) in Space)
            {
                var values = candidates ?? p.Grid(_options.GridPointsPerRange);
                product = product.SelectMany(d => values.Select(v => new Dictionary<string, object>(d) { [p.Name] = v }));
            }
            plans = product.ToList();
            if (plans.Count > _options.MaxTrials)
            {
                Training.Batching.Shuffle(plans, rng);
                plans = plans.Take(_options.MaxTrials).ToList();
            }
            return plans;
        }
        // Random: the base options first (a baseline), then draws; duplicates are skipped.
        plans.Add(Space.ToDictionary(s => s.Parameter.Name, s => s.Parameter.Get(_base)!));
        var seen = new HashSet<string> { Key(plans[0]) };
        for (int attempt = 0; plans.Count < _options.MaxTrials && attempt < _options.MaxTrials * 50; attempt++)
        {
            var d = Space.ToDictionary(s => s.Parameter.Name, s => s.Candidates is { } c ? c[rng.Next(c.Count)] : s.Parameter.Sample(rng));
            if (seen.Add(Key(d))) plans.Add(d);
        }
        return plans;
    }

    private static string Key(Dictionary<string, object> d) => string.Join("|", d.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"));

    /// <summary>The options of one trial: a copy of the base options with <paramref name="values"/> applied and made consistent.</summary>
    public TOptions Apply(IReadOnlyDictionary<string, object> values)
    {
        var o = (TOptions)_base.ShallowCopy();
        foreach (var (p, _) in Space)
            if (values.TryGetValue(p.Name, out var v)) p.Set(o, v);
        // Heads must divide the hidden size and rotary positions need an even head size.
        int multiple = 2 * Math.Max(1, o.NumberOfHeads);
        if (o.ModelDimension % multiple != 0) o.ModelDimension = Math.Max(multiple, (int)Math.Round(o.ModelDimension / (double)multiple) * multiple);
        return o;
    }

    /// <summary>Runs the sweep on <paramref name="data"/> (split into <see cref="SweepOptions.Folds"/> folds once, reused by every trial).</summary>
    public SweepResult<TOptions> Run(IDataView data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var clock = Stopwatch.StartNew();
        var token = _options.CancellationToken;
        var folds = _ml.Data.CrossValidationSplit(data, _options.Folds, _options.SamplingKeyColumnName, _options.Seed);
        var plans = PlanTrials();
        Log($"Sweep: {plans.Count} {_options.Strategy.ToString().ToLowerInvariant()} trial(s) × {_options.Folds} folds over {string.Join("; ", Space.Select(s => s.Candidates is null ? s.Parameter.ToString() : $"{s.Parameter.Name} ∈ {{{string.Join(", ", s.Candidates)}}}"))}; metric {_metric.Name}.");
        var trials = new List<SweepTrial>();
        SweepTrial? best = null;
        int sinceBest = 0;
        string stop = "all trials ran";
        for (int i = 0; i < plans.Count; i++)
        {
            token.ThrowIfCancellationRequested();
            if (_options.TimeBudget is { } budget && clock.Elapsed > budget) { stop = $"time budget {budget} reached"; break; }
            var trial = RunTrial(i, plans[i], folds, best, token);
            trials.Add(trial);
            _options.Progress?.Report(trial);
            Log(trial.Error is not null ? $"Trial {i}: failed ({trial.Error}) — {trial.Describe()}"
                : $"Trial {i}: {_metric.Name} {trial.Metric:F4} ± {trial.StandardDeviation:F4} over {trial.FoldMetrics.Count} fold(s){(trial.Pruned ? " (pruned)" : "")}, {trial.Elapsed.TotalSeconds:F1} s — {trial.Describe()}");
            if (trial.Error is null && !trial.Pruned && (best is null || _metric.Better(trial.Metric, best.Metric))) { best = trial; sinceBest = 0; }
            else if (++sinceBest >= _options.EarlyStoppingTrials && _options.EarlyStoppingTrials > 0 && i < plans.Count - 1)
            {
                stop = $"early stop: no better trial in the last {sinceBest}";
                break;
            }
        }
        Log(best is null ? $"Sweep ended ({stop}); every trial failed." : $"Sweep ended ({stop}) after {clock.Elapsed.TotalSeconds:F0} s; best trial {best.Index}: {_metric.Name} {best.Metric:F4} — {best.Describe()}.");
        return new SweepResult<TOptions>(trials, best, best is null ? null : Apply(best.Parameters), _metric, stop);
    }

    private SweepTrial RunTrial(int index, Dictionary<string, object> values, IReadOnlyList<DataOperationsCatalog.TrainTestData> folds, SweepTrial? best, CancellationToken token)
    {
        var sw = Stopwatch.StartNew();
        var options = Apply(values);
        var used = Space.ToDictionary(s => s.Parameter.Name, s => s.Parameter.Get(options)!);
        if (token.CanBeCanceled) options.CancellationToken = token;
        var metrics = new List<double>();
        try
        {
            foreach (var fold in folds)
            {
                token.ThrowIfCancellationRequested();
                var model = _pipeline(options).Fit(fold.TrainSet);
                try { metrics.Add(_metric.Compute(_ml, model.Transform(fold.TestSet))); }
                finally { (model as IDisposable)?.Dispose(); }
                if (_options.PruneTrials && best is not null && metrics.Count < folds.Count && metrics.All(m => _metric.Better(best.FoldMetrics.Take(metrics.Count).Aggregate(Worst), m)))
                    return Done(true, null);
            }
            return Done(false, null);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException && e is not OperationCanceledException)
        {
            return Done(false, e.Message);
        }

        SweepTrial Done(bool pruned, string? error)
        {
            double mean = metrics.Count == 0 || error is not null ? double.NaN : metrics.Average();
            double sd = metrics.Count < 2 ? 0 : Math.Sqrt(metrics.Sum(m => (m - mean) * (m - mean)) / (metrics.Count - 1));
            return new SweepTrial(index, used, metrics, mean, sd, pruned, error, sw.Elapsed);
        }
    }

    private double Worst(double a, double b) => _metric.Better(a, b) ? b : a;

    private void Log(string message) => MLContextLog.Info(_ml, "Sweep", message);
}

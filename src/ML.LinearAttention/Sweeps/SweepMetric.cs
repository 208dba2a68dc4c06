namespace Microsoft.ML.LinearAttention.Sweeps;

/// <summary>What a sweep optimises: a number computed from a fold's scored test data, and its direction.</summary>
/// <param name="Name">Shown in logs and results.</param>
/// <param name="HigherIsBetter">Direction of improvement.</param>
/// <param name="Compute">Metric of one fold: (MLContext, scored test data) → value.</param>
public sealed record SweepMetric(string Name, bool HigherIsBetter, Func<MLContext, IDataView, double> Compute)
{
    /// <summary>Multiclass micro accuracy (ML.NET's MulticlassClassification.Evaluate).</summary>
    public static SweepMetric MicroAccuracy(string labelColumnName = "Label", string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel")
        => new("MicroAccuracy", true, (ml, d) => ml.MulticlassClassification.Evaluate(d, labelColumnName, scoreColumnName, predictedLabelColumnName).MicroAccuracy);

    /// <summary>Multiclass macro accuracy (mean per-class accuracy; better for imbalanced classes).</summary>
    public static SweepMetric MacroAccuracy(string labelColumnName = "Label", string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel")
        => new("MacroAccuracy", true, (ml, d) => ml.MulticlassClassification.Evaluate(d, labelColumnName, scoreColumnName, predictedLabelColumnName).MacroAccuracy);

    /// <summary>Multiclass log-loss (lower is better).</summary>
    public static SweepMetric LogLoss(string labelColumnName = "Label", string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel")
        => new("LogLoss", false, (ml, d) => ml.MulticlassClassification.Evaluate(d, labelColumnName, scoreColumnName, predictedLabelColumnName).LogLoss);

    /// <summary>Regression root mean squared error (lower is better).</summary>
    public static SweepMetric RootMeanSquaredError(string labelColumnName = "Label", string scoreColumnName = "Score")
        => new("RMSE", false, (ml, d) => ml.Regression.Evaluate(d, labelColumnName, scoreColumnName).RootMeanSquaredError);

    /// <summary>Regression R².</summary>
    public static SweepMetric RSquared(string labelColumnName = "Label", string scoreColumnName = "Score")
        => new("RSquared", true, (ml, d) => ml.Regression.Evaluate(d, labelColumnName, scoreColumnName).RSquared);

    /// <summary>True when <paramref name="a"/> is strictly better than <paramref name="b"/>.</summary>
    public bool Better(double a, double b) => !double.IsNaN(a) && (double.IsNaN(b) || (HigherIsBetter ? a > b : a < b));
}

/// <summary>How a sweep picks its trials.</summary>
public enum SweepStrategy
{
    /// <summary>The base options first, then random draws (log-uniform for log ranges).</summary>
    Random,
    /// <summary>The Cartesian product of every choice and <see cref="SweepOptions.GridPointsPerRange"/> points per range.</summary>
    Grid,
}

/// <summary>Settings of an <see cref="OptionSweep{TOptions}"/>.</summary>
public sealed class SweepOptions
{
    /// <summary>Random (default) or grid.</summary>
    public SweepStrategy Strategy = SweepStrategy.Random;
    /// <summary>Most trials to run (a larger grid is sampled down to this many, seeded).</summary>
    public int MaxTrials = 10;
    /// <summary>Cross-validation folds per trial (at least 2).</summary>
    public int Folds = 3;
    /// <summary>Members to sweep (names of [Range]/[Choice] fields); null = a small default set (learning rate, size, depth, dropout, attention).</summary>
    public IReadOnlyList<string>? Parameters;
    /// <summary>Custom candidates for a member, replacing its attribute (e.g. <c>["Attention"] = new object[] { "linear", "gla" }</c>).</summary>
    public IDictionary<string, object[]> Candidates = new Dictionary<string, object[]>();
    /// <summary>Grid points per range (ends included).</summary>
    public int GridPointsPerRange = 3;
    /// <summary>Stop after this many consecutive trials without a better mean metric (0 = run every trial).</summary>
    public int EarlyStoppingTrials = 4;
    /// <summary>Stop a trial before its remaining folds when every fold so far is worse than the best trial's weakest fold.</summary>
    public bool PruneTrials = true;
    /// <summary>Optional wall-clock budget; no new trial starts after it.</summary>
    public TimeSpan? TimeBudget;
    /// <summary>Seed of the sampler and of the fold split.</summary>
    public int Seed = 1;
    /// <summary>Optional column that keeps related rows in one fold (ML.NET's CrossValidationSplit samplingKeyColumnName).</summary>
    public string? SamplingKeyColumnName;
    /// <summary>Called after each trial.</summary>
    public IProgress<SweepTrial>? Progress;
    /// <summary>Stops the sweep between folds (and training within one batch, through the trial's options).</summary>
    public CancellationToken CancellationToken;

    /// <summary>The members swept when <see cref="Parameters"/> is null.</summary>
    public static readonly IReadOnlyList<string> DefaultParameters = new[] { "LearningRate", "ModelDimension", "NumberOfLayers", "Dropout", "Attention" };
}

/// <summary>One trial of a sweep.</summary>
/// <param name="Index">0-based trial number.</param>
/// <param name="Parameters">Values of the swept members (after making them consistent, e.g. ModelDimension a multiple of 2 × heads).</param>
/// <param name="FoldMetrics">Metric of each fold that ran.</param>
/// <param name="Metric">Mean over the folds that ran (NaN when the trial failed).</param>
/// <param name="StandardDeviation">Spread over the folds.</param>
/// <param name="Pruned">True when stopped before its last fold (clearly worse than the best trial).</param>
/// <param name="Error">Why the trial failed, if it did (e.g. an invalid combination); the sweep goes on.</param>
/// <param name="Elapsed">Wall-clock time of the trial.</param>
public sealed record SweepTrial(int Index, IReadOnlyDictionary<string, object> Parameters, IReadOnlyList<double> FoldMetrics, double Metric,
    double StandardDeviation, bool Pruned, string? Error, TimeSpan Elapsed)
{
    /// <summary>The parameters as "Name=value, ...".</summary>
    public string Describe() => string.Join(", ", Parameters.Select(p => $"{p.Key}={Format(p.Value)}"));

    private static string Format(object v) => v is double d ? d.ToString("G3", System.Globalization.CultureInfo.InvariantCulture) : v.ToString() ?? "";
}

/// <summary>Outcome of a sweep.</summary>
public sealed class SweepResult<TOptions>
{
    internal SweepResult(IReadOnlyList<SweepTrial> trials, SweepTrial? best, TOptions? bestOptions, SweepMetric metric, string stopReason)
    {
        Trials = trials; Best = best; BestOptions = bestOptions; Metric = metric; StopReason = stopReason;
    }

    /// <summary>Every trial in order.</summary>
    public IReadOnlyList<SweepTrial> Trials { get; }
    /// <summary>The best complete trial (null when every trial failed).</summary>
    public SweepTrial? Best { get; }
    /// <summary>A copy of the base options with the best trial's values (refit it on all data).</summary>
    public TOptions? BestOptions { get; }
    /// <summary>The metric optimised.</summary>
    public SweepMetric Metric { get; }
    /// <summary>Why the sweep ended (all trials, early stopping, time budget).</summary>
    public string StopReason { get; }

    /// <summary>A markdown table of the trials, best first.</summary>
    public string ToMarkdown()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"| trial | {Metric.Name} (mean ± sd) | folds | parameters |");
        sb.AppendLine("| ---: | ---: | ---: | --- |");
        var ordered = Trials.Where(t => t.Error is null).OrderBy(t => t.Metric * (Metric.HigherIsBetter ? -1 : 1)).Concat(Trials.Where(t => t.Error is not null));
        foreach (var t in ordered)
            sb.AppendLine($"| {t.Index} | {(t.Error is null ? $"{t.Metric:F4} ± {t.StandardDeviation:F4}" : "failed")} | {t.FoldMetrics.Count}{(t.Pruned ? " (pruned)" : "")} | " +
                          $"{t.Describe()}{(t.Error is null ? "" : $" — {t.Error}")} |");
        return sb.ToString();
    }
}

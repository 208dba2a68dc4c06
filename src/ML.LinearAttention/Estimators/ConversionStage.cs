using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Conversion;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>The conversion inside the estimators' Fit: plan, module surgery, stage 1, and the stage-2 hand-over.</summary>
internal static class ConversionStage
{
    /// <summary>
    /// Converts <paramref name="softmax"/> as <c>o.Conversion</c> says and runs attention transfer on the transfer data
    /// (or <paramref name="trainingData"/>). Returns the converted model; <paramref name="softmax"/> is disposed on success.
    /// </summary>
    public static SequenceModel Run(SequenceModel softmax, LinearAttentionOptions o, InputColumns columns, TextTokenizer? tokenizer,
        IDataView trainingData, int seed, Device device, ITrainingLog log, Action checkCancel)
    {
        var c = o.Conversion!;
        if (tokenizer is null || columns.TextColumns.Count == 0)
            throw new ArgumentException("Conversion (attention transfer) reads text: it needs text columns, not a numeric sequence.");
        var plan = c.PlanFor(softmax.Config);
        var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        try
        {
            long kept = converted.named_parameters().Where(p => !fresh.Contains(p.name)).Sum(p => p.parameter.numel());
            log.Info($"Conversion: {plan.Count} of {softmax.Config.NumLayers} softmax layer(s) replaced ({string.Join(", ", plan.Select(p => $"{p.Layer}→{p.Name}"))}); " +
                     $"{kept:N0} parameters kept from the softmax model (q/k/v/o included), {converted.parameters().Sum(p => p.numel()) - kept:N0} new.");

            var textOnly = new InputColumns { TextColumns = columns.TextColumns, LabelColumn = columns.LabelColumn, LabelKind = columns.LabelKind };
            var data = c.TransferData ?? trainingData;
            SchemaChecks.Check(data.Schema, textOnly, withLabel: false);
            var (texts, budget) = TransferTexts(c, data, textOnly, tokenizer, o, seed, log);
            var settings = new TransferSettings
            {
                Steps = budget.Steps, BatchSize = budget.BatchSize, MaxBatchTokens = o.MaxBatchTokens, LearningRate = c.TransferLearningRate,
                OutputMseWeight = c.OutputMseWeight, AttentionCrossEntropyWeight = c.AttentionCrossEntropyWeight,
                LogEverySteps = o.LogEverySteps, Seed = seed, PadId = softmax.Config.PadId,
            };
            string? cacheKey = null;
            if (c.CacheDirectory is { } cache && settings.Steps > 0 && fresh.Count > 0)
            {
                cacheKey = ConvertedBackboneCache.Key(softmax, converted.Config, settings, texts);
                if (ConvertedBackboneCache.TryLoad(cache, cacheKey, converted, fresh))
                {
                    log.Info($"Stage 1/2 (attention transfer): loaded from the converted-backbone cache '{ConvertedBackboneCache.PathFor(cache, cacheKey)}' (same teacher, " +
                             "layers, mechanism options, stage-1 settings, texts and seed); no transfer run.");
                    softmax.Dispose();
                    return converted;
                }
            }
            var report = AttentionTransfer.Run(softmax, converted, plan, fresh, () => texts, settings, device, log, checkCancel);
            if (cacheKey is not null && report.Steps > 0)
            {
                var path = ConvertedBackboneCache.Save(c.CacheDirectory!, cacheKey, converted, fresh,
                    $"{string.Join(", ", plan.Select(p => $"{p.Layer}->{p.Name}"))}; {budget.Reason}; seed {seed}; {DateTime.UtcNow:u}");
                log.Info($"Stage 1/2: the converted backbone's new parameters were saved to the cache '{path}'.");
            }

            softmax.Dispose();
            return converted;
        }
        catch
        {
            converted.Dispose();
            throw;
        }
    }

    /// <summary>Checks the conversion options and the stage-2 method before any data is read (nothing when there is no conversion).</summary>
    public static void Validate(LinearAttentionOptions o)
    {
        if (o.Conversion is null) return;
        o.Conversion.Validate();
        StageTwoMethod(o, null);
    }

    /// <summary>
    /// The fine-tuning method of stage 2: <c>Conversion.FineTuning</c> (LoRA r 8, α 16 on q, k, v, o by default), or the
    /// estimator's <c>FineTuning</c> when that is null. Both set to different methods is an error.
    /// </summary>
    public static (string Method, FineTuningOptions? Options) StageTwoMethod(LinearAttentionOptions o, ITrainingLog? log)
    {
        var c = o.Conversion!;
        string estimator = string.IsNullOrWhiteSpace(o.FineTuning) ? "full" : o.FineTuning;
        bool estimatorSet = !string.IsNullOrWhiteSpace(o.FineTuning) || o.FineTuningOptions is not null;
        if (c.FineTuning is not null && estimatorSet && !string.Equals(estimator, c.FineTuning, StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"Two stage-2 fine-tuning methods: the estimator's FineTuning = '{estimator}' and Conversion.FineTuning = '{c.FineTuning}'. " +
                                        "Set Conversion.FineTuning = null to use the estimator's, or leave the estimator's FineTuning unset (null).");
        var (method, options) = c.FineTuning is null ? (estimator, o.FineTuningOptions) : (c.FineTuning, c.FineTuningOptions ?? (estimatorSet ? o.FineTuningOptions : null));
        log?.Info($"Stage 2/2 (fine-tuning on the labelled task): method '{method}'{(options is null ? " with its defaults" : "")}, " +
                 $"{(o.MaxEpochs is { } epochs ? $"{epochs} epoch(s)" : "epochs chosen by Fit (MaxEpochs = null)")}{(o.MaxSteps > 0 ? $" / at most {o.MaxSteps} steps" : "")}, lr {o.LearningRate:0.###e+00}.");
        return (method, options);
    }

    private const long MaxTransferTokens = 16L << 20;

    /// <summary>
    /// The stage-1 texts and budget: the user's texts (at most as many as the steps can use), topped up with
    /// <see cref="GenericCorpus"/> text as <see cref="TransferBudget.Choose"/> says, shuffled together with the seed.
    /// </summary>
    private static (List<Example> Texts, TransferBudget Budget) TransferTexts(ConversionOptions c, IDataView data, InputColumns textOnly, TextTokenizer tokenizer,
        LinearAttentionOptions o, int seed, ITrainingLog log)
    {
        if (c.TransferSteps == 0) return (new List<Example>(), TransferBudget.Choose(0, 0, 0, c.TransferBatchSize, 0));
        long usable = (long)(c.TransferSteps ?? TransferBudget.MaximumAutoSteps) * (c.TransferBatchSize ?? 64);
        // The texts are held in memory for the cache key and the shuffle: at most what the steps can use, and at most
        // MaxTransferTokens tokens (auto reads ~4M tokens at most: 4,000 steps of ~1,024).
        long tokens = 0;
        var user = ReadText(data, textOnly, tokenizer, o.MaxSequenceLength, o.CancellationToken)
            .Take((int)Math.Min(int.MaxValue, usable)).TakeWhile(e => (tokens += e.Length) <= MaxTransferTokens || tokens == e.Length).ToList();
        if (user.Count == 0)
            throw new InvalidOperationException("Attention transfer found no text rows (ConversionOptions.TransferData, or the training data, is empty).");
        var budget = TransferBudget.Choose(user.Count, user.Average(e => e.Length), c.TransferSteps, c.TransferBatchSize, c.MinimumTransferTexts);
        var texts = GenericCorpus.Mix(user, budget.GenericTexts, tokenizer, o.MaxSequenceLength, seed);
        log.Info($"Stage 1 texts: {user.Count:N0} of the user's ({(c.TransferData is null ? "training data" : "TransferData")}) and {budget.GenericTexts:N0} generic; " +
                 $"{budget.Reason}.");
        return (texts, budget);
    }

    /// <summary>Token rows of the text columns of <paramref name="data"/> (no label read).</summary>
    internal static IEnumerable<Example> ReadText(IDataView data, InputColumns columns, TextTokenizer tokenizer, int maxLength, CancellationToken cancellation)
    {
        var reader = new ExampleReader(columns, tokenizer, maxLength);
        using var cursor = data.GetRowCursor(reader.ColumnsNeeded(data.Schema, withLabel: false));
        var next = reader.Bind(cursor, withLabel: false);
        while (cursor.MoveNext())
        {
            cancellation.ThrowIfCancellationRequested();
            if (next() is { } e) yield return e;
        }
    }
}

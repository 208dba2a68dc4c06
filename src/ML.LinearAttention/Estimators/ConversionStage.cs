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
            var settings = new TransferSettings
            {
                Steps = c.TransferSteps, BatchSize = c.TransferBatchSize, MaxBatchTokens = o.MaxBatchTokens, LearningRate = c.TransferLearningRate,
                OutputMseWeight = c.OutputMseWeight, AttentionCrossEntropyWeight = c.AttentionCrossEntropyWeight,
                LogEverySteps = o.LogEverySteps, Seed = seed, PadId = softmax.Config.PadId,
            };
            AttentionTransfer.Run(softmax, converted, plan, fresh, () => ReadText(data, textOnly, tokenizer, o.MaxSequenceLength, o.CancellationToken),
                settings, device, log, checkCancel);

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
                 $"{o.MaxEpochs} epoch(s){(o.MaxSteps > 0 ? $" / at most {o.MaxSteps} steps" : "")}, lr {o.LearningRate:0.###e+00}.");
        return (method, options);
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

using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Conversion;

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
        var plan = SoftmaxConversion.Plan(softmax.Config, c);
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

            // HOOK(LoRA, issue 5 stage 2): LoLCATs fine-tunes the converted model with LoRA r 8, α 16 on q, k, v, o (plus the
            // task head). When FineTuning/ (LoRA) is on main, apply it to `converted` here, unless the options choose another
            // fine-tuning method. Until then stage 2 trains every parameter.
            log.Info($"Stage 2/2 (fine-tuning on the labelled task): all {converted.parameters().Sum(p => p.numel()):N0} parameters train " +
                     "(LoRA r 8, α 16 on q, k, v, o replaces this once the fine-tuning catalog is available).");
            softmax.Dispose();
            return converted;
        }
        catch
        {
            converted.Dispose();
            throw;
        }
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

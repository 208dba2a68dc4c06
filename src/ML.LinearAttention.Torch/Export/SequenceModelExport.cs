using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.LinearProbe;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>What the exported graph returns.</summary>
public enum SequenceExportTask
{
    /// <summary>Class probabilities ("scores", softmax of the logits) and the arg-max class index ("predicted_label").</summary>
    Classification,
    /// <summary>The regression value in the label's units ("score").</summary>
    Regression,
}

/// <summary>Settings of a <see cref="SequenceModelExport"/>.</summary>
/// <param name="Task">Classification (probabilities and arg-max) or regression (destandardized value).</param>
/// <param name="MaxLength">Longest token sequence the graph will see (the transformer's MaxSequenceLength): the size of
/// the rotary tables.</param>
/// <param name="SideFill">Values that replace NaN side features (the training means), or null.</param>
/// <param name="Temperature">Classification: the logits are divided by it before the softmax, as the transformer's
/// calibrated probabilities are (1 = none); the arg-max does not change.</param>
public sealed record SequenceExportSettings(SequenceExportTask Task, int MaxLength, float[]? SideFill = null, double Temperature = 1.0);

/// <summary>
/// Writes a fitted <see cref="SequenceModel"/> (token input) as an ONNX graph (opset 18) that computes what
/// <c>Forward</c> computes in eval mode, followed by the task's finish (softmax, or the target's destandardization).
/// Inputs: <c>input_ids</c> and <c>attention_mask</c> (int64 [batch, sequence], mask 1 = real token), <c>segment_ids</c>
/// when the model embeds segments, <c>side_features</c> (float [batch, S]) when it fuses side features. Outputs:
/// <c>scores</c> [batch, classes] and <c>predicted_label</c> (int64 [batch]) for classification, <c>score</c>
/// [batch, 1] for regression.
/// </summary>
public static class SequenceModelExport
{
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string SegmentIds = "segment_ids";
    public const string SideFeatures = "side_features";
    public const string Scores = "scores";
    public const string PredictedLabel = "predicted_label";
    public const string Score = "score";

    /// <summary>True when the graph of <paramref name="model"/> has a <see cref="SegmentIds"/> input.</summary>
    public static bool UsesSegments(SequenceModel model)
        => model.Config.Architecture == EncoderArchitecture.BertPostNorm || model.Config.NumSegments > 1;

    /// <summary>Throws <see cref="NotSupportedException"/> naming the first part of <paramref name="model"/> that has no
    /// ONNX form (a mechanism, numeric-sequence input, a head).</summary>
    public static void CheckSupported(SequenceModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        if (c.VocabularySize <= 0)
            throw new NotSupportedException("Models over numeric sequences (a SequenceColumn) cannot be exported to ONNX; only token (text) input can.");
        for (int i = 0; i < c.NumLayers; i++) MixerExport.CheckSupported(c.MixerFor(i).Name, i);
        if (model.ProbeHead is { } head && head is not (LinearProbeHead or MomentProbingHead))
            throw new NotSupportedException($"The head {head.GetType().Name} cannot be exported to ONNX; the built-in head, linear probe and Moment Probing heads can.");
    }

    /// <summary>Writes the graph of <paramref name="model"/> to <paramref name="stream"/>; returns the node count.</summary>
    public static int Write(SequenceModel model, SequenceExportSettings settings, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(stream);
        CheckSupported(model);
        if (settings.MaxLength <= 0) throw new ArgumentOutOfRangeException(nameof(settings), settings.MaxLength, "MaxLength must be positive (the transformer's MaxSequenceLength).");
        var g = new OnnxGraphBuilder();
        var c = model.Config;
        var ids = g.Input(InputIds, OnnxElementType.Int64, "batch", "sequence");
        var mask = g.Input(AttentionMask, OnnxElementType.Int64, "batch", "sequence");
        var segments = UsesSegments(model) ? g.Input(SegmentIds, OnnxElementType.Int64, "batch", "sequence") : null;
        var side = c.SideFeatures > 0 ? g.Input(SideFeatures, OnnxElementType.Float, "batch", (long)c.SideFeatures) : null;
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var ctx = new ExportContext(g, model, mask, settings.MaxLength);
            var x = Embed(ctx, c, ids, segments);
            for (int i = 0; i < c.NumLayers; i++) x = Block(ctx, c, x, i);
            if (ctx.HasModule("final_norm")) x = ctx.RmsNorm(x, "final_norm");
            var output = Head(ctx, model, x, side, settings.SideFill);
            if (settings.Task == SequenceExportTask.Classification)
            {
                var calibrated = settings.Temperature == 1.0 ? output : g.Div(output, g.Scalar((float)settings.Temperature));
                g.Output(g.Softmax(calibrated), Scores, OnnxElementType.Float, "batch", (long)c.Outputs);
                g.Output(g.Node("ArgMax", new[] { output }, ("axis", 1), ("keepdims", 0)), PredictedLabel, OnnxElementType.Int64, "batch");
            }
            else
            {
                var value = g.Add(g.Mul(output, g.Initializer("target_std", ctx.Weight("target_std"))), g.Initializer("target_mean", ctx.Weight("target_mean")));
                g.Output(value, Score, OnnxElementType.Float, "batch", 1L);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        g.Write(stream, "ML.LinearAttention." + settings.Task);
        return g.NodeCount;
    }

    private static string Embed(ExportContext ctx, EncoderConfig c, string ids, string? segments)
    {
        var g = ctx.Graph;
        var x = g.Gather(g.Initializer("token_embedding", ctx.Weight("token_embedding.weight")), ids);
        if (c.Architecture == EncoderArchitecture.BertPostNorm)
        {
            // Extra segments share BERT's last token type (SequenceModel.Embed's clamp).
            var types = g.Node("Min", new[] { segments!, g.Ints(c.TokenTypes - 1) });
            x = g.Add(x, g.Gather(g.Initializer("segment_embedding", ctx.Weight("segment_embedding.weight")), types));
        }
        else if (segments is not null)
            x = g.Add(x, g.Gather(g.Initializer("segment_embedding", ctx.Weight("segment_embedding.weight")), segments));
        if (c.Position == PositionEncoding.Learned)
        {
            if (ctx.MaxLength > c.MaxPositions)
                throw new ArgumentException($"The transformer's MaxSequenceLength {ctx.MaxLength} exceeds the model's learned position table ({c.MaxPositions}).");
            x = g.Add(x, g.Gather(g.Initializer("position_embedding", ctx.Weight("position_embedding.weight")), ctx.Positions));
        }
        if (ctx.HasModule("embedding_norm")) x = ctx.LayerNorm(x, "embedding_norm");
        return ctx.ZeroPadded(x);
    }

    private static string Block(ExportContext ctx, EncoderConfig c, string x, int layer)
    {
        var g = ctx.Graph;
        string p = $"blocks.{layer}";
        var (name, options) = c.MixerFor(layer);
        var mixerConfig = new Attention.MixerConfig(c.ModelDim, c.NumHeads, Causal: false, LayerIndex: layer, NumLayers: c.NumLayers);
        double? rope = c.Position == PositionEncoding.Rope ? c.RopeTheta : null;
        string h;
        switch (ctx.Module(p))
        {
            case EncoderBlock:
                h = g.Add(x, MixerExport.Emit(ctx, ctx.RmsNorm(x, p + ".norm1"), p + ".mixer", name, options, mixerConfig, rope));
                var f = ctx.Linear(g.Gelu(ctx.Linear(ctx.RmsNorm(h, p + ".norm2"), p + ".ffn_in")), p + ".ffn_out");
                h = g.Add(h, Recalibrate(ctx, p, h, f));
                break;
            case PostNormBlock:
                h = ctx.LayerNorm(g.Add(x, MixerExport.Emit(ctx, x, p + ".mixer", name, options, mixerConfig, rope)), p + ".attention_norm");
                var inner = ctx.Linear(h, p + ".ffn_in");
                inner = c.Activation switch
                {
                    "gelu" => g.Gelu(inner),
                    "gelu_new" or "gelu_pytorch_tanh" => g.Gelu(inner, tanh: true),
                    "relu" => g.Relu(inner),
                    var a => throw new NotSupportedException($"FFN activation '{a}' cannot be exported."),
                };
                h = ctx.LayerNorm(g.Add(h, Recalibrate(ctx, p, h, ctx.Linear(inner, p + ".ffn_out"))), p + ".ffn_norm");
                break;
            case var other:
                throw new NotSupportedException($"Block {layer} is a {other.GetType().Name}; only the encoder's pre-norm and post-norm blocks can be exported.");
        }
        return ctx.ZeroPadded(h);
    }

    // PSRP of Moment Probing+: f ← shift + (1 + scale)·f with (scale, shift) from relu(down(h)).
    internal static string Recalibrate(ExportContext ctx, string block, string h, string f)
    {
        string p = block + ".ffn_recalibration";
        if (!ctx.HasModule(p)) return f;
        if (ctx.Module(p) is not PsrpRecalibration)
            throw new NotSupportedException($"The FFN recalibration of {block} is a {ctx.Module(p).GetType().Name}; only PSRP (Moment Probing+) can be exported.");
        var g = ctx.Graph;
        var z = g.Relu(ctx.Linear(h, p + ".down"));
        var scale = ctx.Linear(z, p + ".up_weight");
        var shift = ctx.Linear(z, p + ".up_bias");
        return g.Add(shift, g.Mul(g.Add(scale, g.Scalar(1)), f));
    }

    private static string Head(ExportContext ctx, SequenceModel model, string states, string? side, float[]? sideFill)
    {
        var g = ctx.Graph;
        var c = model.Config;
        string pooled = c.Pooling == Pooling.Cls
            ? g.Gather(states, g.IntScalar(0), axis: 1)
            : g.Div(g.ReduceSum(ctx.ZeroPadded(states), false, 1), g.Max(g.ReduceSum(ctx.TokenMask, false, 1), g.Scalar(1)));
        if (side is not null)
        {
            if (sideFill is not null)
            {
                if (sideFill.Length != c.SideFeatures)
                    throw new ArgumentException($"SideFill has {sideFill.Length} values; the model fuses {c.SideFeatures} side features.");
                side = g.Where(g.Node("IsNaN", new[] { side }), g.Const(sideFill, sideFill.Length), side);
            }
            var standardized = g.Div(g.Sub(side, g.Initializer("side_mean", ctx.Weight("side_mean"))), g.Initializer("side_std", ctx.Weight("side_std")));
            pooled = g.Add(pooled, ctx.Linear(standardized, "side_projection"));
        }
        return model.ProbeHead switch
        {
            null => ctx.Linear(g.Gelu(ctx.Linear(ctx.RmsNorm(pooled, "head_norm"), "head_dense")), "head_out"),
            LinearProbeHead => ctx.Linear(ctx.HasModule("probe_head.fc_norm") ? ctx.LayerNorm(pooled, "probe_head.fc_norm") : pooled, "probe_head.fc"),
            MomentProbingHead mp => MomentProbingExport.Emit(ctx, mp, states, pooled),
            var h => throw new NotSupportedException($"The head {h.GetType().Name} cannot be exported to ONNX."),
        };
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// Writes a fitted <see cref="VisionModel"/> as an ONNX graph (opset 18) that computes what <c>Forward</c> computes in
/// eval mode, then the class probabilities. Input <c>image</c>: float [batch, 3, H, W], the RGB pixels 0..255 of an image
/// already resized to the model's <see cref="VisionConfig.ImageWidth"/> × <see cref="VisionConfig.ImageHeight"/>, planes
/// R, G, B (ML.NET's <c>ExtractPixels</c> with its defaults and <c>ColorBits.Rgb</c>); the model's own normalisation
/// (mean/std, or the pretrained stem's BGR order and mean image) is inside the graph. Outputs: <c>scores</c>
/// [batch, classes] and <c>predicted_label</c> (int64 [batch]).
/// </summary>
public static class VisionModelExport
{
    public const string Image = "image";
    public const string Scores = SequenceModelExport.Scores;
    public const string PredictedLabel = SequenceModelExport.PredictedLabel;

    /// <summary>What an image model may contain to be exported, for error messages and docs.</summary>
    public static string ExportableSummary =>
        $"image models export with the patch-encoder backbone (one strided convolution or ConvStem) or the pretrained ResNet18 stem, " +
        $"convolutional or learned positions, the mechanisms {string.Join(", ", Mechanisms)} (and hybrids of them), and the linear or Moment Probing head";

    /// <summary>Registry names of the mechanisms an image model may use to be exported.</summary>
    public static IReadOnlyList<string> Mechanisms { get; } = MixerExport.Supported.Concat(VisionMixerExport.Supported).ToArray();

    /// <summary>Throws <see cref="NotSupportedException"/> naming the first part of <paramref name="model"/> without an
    /// ONNX form, with the list of what exports.</summary>
    public static void CheckSupported(VisionModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        for (int i = 0; i < c.NumLayers; i++)
        {
            var name = c.MixerFor(i).Name;
            if (!Mechanisms.Contains(name))
                throw new NotSupportedException($"Attention mechanism '{name}' (block {i}) of this image model cannot be exported to ONNX; {ExportableSummary}. " +
                                                "Train with one of these mechanisms (ImageClassificationOptions.Attention), or score this model with TorchSharp.");
        }
        foreach (var (name, module) in model.named_modules())
            if (module is EncoderBlock block && block.FfnRecalibration is not null and not PsrpRecalibration)
                throw new NotSupportedException($"The FFN recalibration of {name} is a {block.FfnRecalibration.GetType().Name}; only PSRP can be exported.");
    }

    /// <summary>Writes the graph of <paramref name="model"/> to <paramref name="stream"/>; returns the node count.</summary>
    public static int Write(VisionModel model, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CheckSupported(model);
        var c = model.Config;
        var g = new OnnxGraphBuilder();
        var image = g.Input(Image, OnnxElementType.Float, "batch", 3L, (long)c.ImageHeight, (long)c.ImageWidth);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var writer = new Writer(g, model);
            var logits = writer.Forward(image);
            g.Output(g.Softmax(logits), Scores, OnnxElementType.Float, "batch", (long)c.Outputs);
            g.Output(g.Node("ArgMax", new[] { logits }, ("axis", 1), ("keepdims", 0)), PredictedLabel, OnnxElementType.Int64, "batch");
        }
        finally
        {
            if (wasTraining) model.train();
        }
        g.Write(stream, "ML.LinearAttention.ImageClassification");
        return g.NodeCount;
    }

    // One pass over the model, keeping the spatial size of every feature map (the input size is fixed, so every grid
    // and every "same" padding is known when the graph is written).
    private sealed class Writer(OnnxGraphBuilder g, VisionModel model)
    {
        private readonly VisionConfig _c = model.Config;
        private readonly Dictionary<string, nn.Module> _modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        private readonly Dictionary<string, Tensor> _state = model.state_dict();

        public string Forward(string image)
        {
            var (map, grid) = _c.Backbone == VisionBackbone.PretrainedStem ? Stem(image) : Patches(image);
            var tokens = g.Transpose(g.Reshape(map, 0, 0, -1), 0, 2, 1);                 // [B, T, C]
            var ctx = Context(tokens, grid);                                               // the first stage's
            if (_modules.ContainsKey("stem_proj")) tokens = ctx.Linear(tokens, "stem_proj");
            tokens = ctx.RmsNorm(tokens, "embed_norm");
            if (_state.TryGetValue("pos_embedding", out var positions)) tokens = g.Add(tokens, g.Initializer("pos_embedding", positions));
            int block = 0;
            for (int s = 0; s < _c.Stages.Count; s++)
            {
                if (s > 0)
                {
                    (tokens, grid) = Downsample(tokens, grid, s - 1);
                    ctx = Context(tokens, grid);
                }
                var stage = _c.Stages[s];
                for (int i = 0; i < stage.Depth; i++, block++) tokens = Block(ctx, tokens, grid, stage, block);
            }
            tokens = ctx.RmsNorm(tokens, "final_norm");
            var pooled = g.ReduceMean(tokens, false, 1);
            return _modules.TryGetValue("mp_head", out var mp)
                ? MomentProbingExport.Emit(ctx, (MomentProbingHead)mp, tokens, pooled, "mp_head")
                : ctx.Linear(pooled, "head");
        }

        // Every image token is real: the mixers get an all-ones mask of this stage's length, so their masking is exact.
        private ExportContext Context(string tokens, (int Height, int Width) grid)
        {
            long t = (long)grid.Height * grid.Width;
            var shape = g.Concat(0, g.Dim(tokens, 0), g.Ints(t));
            var ones = g.Node("Expand", new[] { g.Ints(1), shape });
            return new ExportContext(g, model, ones, (int)t);
        }

        private string Block(ExportContext ctx, string x, (int Height, int Width) grid, VisionStage stage, int layer)
        {
            string p = $"blocks.{layer}";
            if (_modules.ContainsKey("cpe." + layer))
                x = g.Add(x, VisionMixerExport.DepthwiseOnGrid(g, x, Weight($"cpe.{layer}.weight"), OptionalWeight($"cpe.{layer}.bias"), $"cpe.{layer}", stage.Dimension, grid));
            var (name, options) = _c.MixerFor(layer);
            var mixerConfig = new Attention.MixerConfig(stage.Dimension, stage.Heads, Causal: false, LayerIndex: layer, NumLayers: _c.NumLayers);
            var normed = ctx.RmsNorm(x, p + ".norm1");
            var mixed = options is MalaOptions mala
                ? VisionMixerExport.Mala(ctx, normed, p + ".mixer", mala, mixerConfig, grid)
                : MixerExport.Emit(ctx, normed, p + ".mixer", name, options, mixerConfig, ropeTheta: null);
            var h = g.Add(x, mixed);
            var f = ctx.Linear(g.Gelu(ctx.Linear(ctx.RmsNorm(h, p + ".norm2"), p + ".ffn_in")), p + ".ffn_out");
            return g.Add(h, SequenceModelExport.Recalibrate(ctx, p, h, f));
        }

        private (string Tokens, (int Height, int Width) Grid) Downsample(string tokens, (int Height, int Width) grid, int index)
        {
            var conv = (Conv2d)_modules[$"downsample.{index}"];
            long c = conv.weight!.shape[1];
            var map = g.Reshape(g.Transpose(tokens, 0, 2, 1), 0, c, grid.Height, grid.Width);
            map = Conv(map, conv.weight, conv.bias, $"downsample.{index}", new long[] { 3, 3 }, new long[] { 2, 2 }, new long[] { 1, 1, 1, 1 }, new long[] { 1, 1 }, 1);
            var next = (Out(grid.Height, 3, 2, 1, 1, 1), Out(grid.Width, 3, 2, 1, 1, 1));
            var norm = (RmsNorm)_modules[$"downsample_norm.{index}"];
            var normed = g.RmsNorm(g.Transpose(g.Reshape(map, 0, 0, -1), 0, 2, 1), Weight($"downsample_norm.{index}.weight"), norm.Eps, $"downsample_norm.{index}");
            return (normed, next);
        }

        // VisionModel: ((x / 255 − mean) / std), then the strided patch convolution or ConvStem's 3×3 stride-2 stack.
        private (string Map, (int Height, int Width) Grid) Patches(string image)
        {
            var mean = g.Const(_c.Mean, 1, 3, 1, 1);
            var std = g.Const(_c.Std, 1, 3, 1, 1);
            var x = g.Div(g.Sub(g.Div(image, g.Scalar(255)), mean), std);
            int h = _c.ImageHeight, w = _c.ImageWidth;
            if (_modules.TryGetValue("patch_embed", out var m))
            {
                var conv = (Conv2d)m;
                long p = _c.PatchSize;
                x = Conv(x, conv.weight!, conv.bias, "patch_embed", new[] { p, p }, new[] { p, p }, new long[] { 0, 0, 0, 0 }, new long[] { 1, 1 }, 1);
                return (x, (h / _c.PatchSize, w / _c.PatchSize));
            }
            int n = (int)Math.Round(Math.Log2(_c.PatchSize));
            for (int i = 0; i < n; i++)
            {
                var conv = (Conv2d)_modules[$"conv_stem.{i}"];
                x = Conv(x, conv.weight!, conv.bias, $"conv_stem.{i}", new long[] { 3, 3 }, new long[] { 2, 2 }, new long[] { 1, 1, 1, 1 }, new long[] { 1, 1 }, 1);
                (h, w) = (Out(h, 3, 2, 1, 1, 1), Out(w, 3, 2, 1, 1, 1));
                if (i < n - 1) x = g.Gelu(x);
            }
            return (x, (h, w));
        }

        // ConvGraph.forward: BGR order when the stem wants it, minus the mean image (resized as the stem resizes it), then
        // its nodes in order; asymmetric and "same" pads become ONNX's explicit [top, left, bottom, right] pads.
        private (string Map, (int Height, int Width) Grid) Stem(string image)
        {
            var stem = model.Stem ?? throw new InvalidOperationException("The model's configuration names a pretrained stem but it has none.");
            var spec = stem.Spec;
            int h = _c.ImageHeight, w = _c.ImageWidth;
            var x = _c.StemBgr ? g.Gather(image, g.Ints(2, 1, 0), axis: 1) : image;
            var mean = stem.MeanImage;
            var resized = mean.shape[2] == h && mean.shape[3] == w
                ? mean
                : nn.functional.interpolate(mean, new long[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false);
            x = g.Sub(x, g.Initializer("stem.mean_image", resized));
            var values = new Dictionary<string, (string Name, int H, int W)> { [spec.Input] = (x, h, w) };
            foreach (var op in spec.Ops)
            {
                var a = values[op.Inputs[0]];
                var pads = op.SamePadding is null ? op.Pads : SamePads(a.H, a.W, op);
                values[op.Output] = op.Kind switch
                {
                    ConvOpKind.Conv => (Conv(a.Name, Weight($"stem.convs.{op.Module}.weight"), OptionalWeight($"stem.convs.{op.Module}.bias"), $"stem.convs.{op.Module}",
                                         op.Kernel, op.Stride, pads, op.Dilation, op.Group),
                                        Out(a.H, op.Kernel[0], op.Stride[0], pads[0], pads[2], op.Dilation[0]), Out(a.W, op.Kernel[1], op.Stride[1], pads[1], pads[3], op.Dilation[1])),
                    ConvOpKind.Relu => (g.Relu(a.Name), a.H, a.W),
                    ConvOpKind.Add => (g.Add(a.Name, values[op.Inputs[1]].Name), a.H, a.W),
                    ConvOpKind.MaxPool => (g.Node("MaxPool", new[] { a.Name }, ("kernel_shape", op.Kernel), ("strides", op.Stride), ("pads", pads)),
                                           Out(a.H, op.Kernel[0], op.Stride[0], pads[0], pads[2], 1), Out(a.W, op.Kernel[1], op.Stride[1], pads[1], pads[3], 1)),
                    _ => throw new NotSupportedException($"The stem operation {op.Kind} cannot be exported."),
                };
                if (op.Output == spec.Output) break;
            }
            var result = values[spec.Output];
            return (result.Name, (result.H, result.W));
        }

        private string Conv(string x, Tensor weight, Tensor? bias, string name, long[] kernel, long[] stride, long[] pads, long[] dilation, long group)
        {
            var inputs = bias is null
                ? new[] { x, g.Initializer(name + ".weight", weight) }
                : new[] { x, g.Initializer(name + ".weight", weight), g.Initializer(name + ".bias", bias) };
            return g.Node("Conv", inputs, ("kernel_shape", kernel), ("strides", stride), ("pads", pads), ("dilations", dilation), ("group", group));
        }

        private Tensor Weight(string path)
            => _state.TryGetValue(path, out var t) ? t : throw new InvalidOperationException($"The model has no weight '{path}'; the exporter and the model disagree.");

        private Tensor? OptionalWeight(string path) => _state.TryGetValue(path, out var t) ? t : null;

        private static int Out(int size, long kernel, long stride, long before, long after, long dilation)
            => (int)((size + before + after - dilation * (kernel - 1) - 1) / stride + 1);

        // ConvGraph.SamePads for a known input size.
        private static long[] SamePads(int height, int width, ConvGraphOp op)
        {
            var p = new long[4];
            int[] size = { height, width };
            for (int axis = 0; axis < 2; axis++)
            {
                long s = op.Stride[axis], k = op.Kernel[axis], d = op.Dilation[axis];
                long total = Math.Max(0, ((size[axis] + s - 1) / s - 1) * s + (k - 1) * d + 1 - size[axis]);
                long before = op.SamePadding == "lower" ? (total + 1) / 2 : total / 2;
                p[axis] = before;
                p[axis + 2] = total - before;
            }
            return p;
        }
    }
}

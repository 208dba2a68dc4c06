using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// A convolutional stem run from a <see cref="ConvGraphSpec"/>: real TorchSharp convolutions (so it fine-tunes like
/// any module) executed node by node in the graph's order, with residual adds, ReLUs and max pools between them.
/// Input: pixels [B, 3, H, W] in the scale the stem was trained on (0..255, RGB); the stem reorders the channels and
/// subtracts its mean image (resized when H × W differs from the mean's size). Output: the feature map
/// [B, OutputChannels, ⌈H / stride⌉, ⌈W / stride⌉].
/// </summary>
public sealed class ConvGraph : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<Conv2d> convs;
    private readonly Tensor mean_image;
    private readonly ConvGraphSpec _spec;
    private readonly bool _bgr;

    /// <summary>Builds the modules of <paramref name="spec"/> (weights random until loaded).</summary>
    /// <param name="spec">Structure.</param>
    /// <param name="bgr">Reverse the RGB input to BGR.</param>
    /// <param name="meanHeight">Height of the mean image (0 = none).</param>
    /// <param name="meanWidth">Width of the mean image.</param>
    public ConvGraph(ConvGraphSpec spec, bool bgr, int meanHeight, int meanWidth) : base(nameof(ConvGraph))
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        _spec = spec;
        _bgr = bgr;
        var list = new List<Conv2d>();
        foreach (var op in spec.Ops.Where(o => o.Kind == ConvOpKind.Conv).OrderBy(o => o.Module))
        {
            var w = op.WeightShape!;
            list.Add(nn.Conv2d(w[1] * op.Group, w[0], (w[2], w[3]), groups: op.Group, bias: true));
        }
        convs = new ModuleList<Conv2d>(list.ToArray());
        mean_image = meanHeight > 0 ? torch.zeros(1, 3, meanHeight, meanWidth) : torch.zeros(1, 3, 1, 1);
        RegisterComponents();
    }

    /// <summary>The structure.</summary>
    public ConvGraphSpec Spec => _spec;

    /// <summary>The mean image [1, 3, h, w] subtracted from the input (the ONNX export writes it into the graph).</summary>
    internal Tensor MeanImage => mean_image;

    /// <summary>Copies imported weights (and the mean image) into the modules.</summary>
    internal void Load(ImportedStem stem)
    {
        using var _ = no_grad();
        if (stem.Convs.Count != convs.Count) throw new InvalidDataException($"The stem has {convs.Count} convolutions but {stem.Convs.Count} weights were imported.");
        for (int i = 0; i < convs.Count; i++)
        {
            var conv = convs[i];
            conv.weight!.copy_(torch.tensor(stem.Convs[i].Weight, conv.weight.shape));
            conv.bias!.copy_(torch.tensor(stem.Convs[i].Bias, conv.bias.shape));
        }
        if (stem.MeanImage is not null) mean_image.copy_(torch.tensor(stem.MeanImage, new long[] { 1, 3, stem.MeanHeight, stem.MeanWidth }));
    }

    /// <summary>RGB pixels 0..255 [B, 3, H, W] → feature map.</summary>
    public override Tensor forward(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var x = _bgr ? pixels.flip(1) : pixels;
        var mean = mean_image.shape[2] == x.shape[2] && mean_image.shape[3] == x.shape[3]
            ? mean_image
            : nn.functional.interpolate(mean_image, new[] { x.shape[2], x.shape[3] }, mode: InterpolationMode.Bilinear, align_corners: false);
        var values = new Dictionary<string, Tensor> { [_spec.Input] = (x - mean.to(x.dtype)).to(convs[0].weight!.dtype) };
        foreach (var op in _spec.Ops)
        {
            var a = values[op.Inputs[0]];
            values[op.Output] = op.Kind switch
            {
                ConvOpKind.Conv => Conv(op, a),
                ConvOpKind.Relu => nn.functional.relu(a),
                ConvOpKind.Add => a + values[op.Inputs[1]],
                ConvOpKind.MaxPool => MaxPool(op, a),
                _ => throw new InvalidOperationException($"Unknown stem operation {op.Kind}."),
            };
            if (op.Output == _spec.Output) break;
        }
        return values[_spec.Output].MoveToOuterDisposeScope();
    }

    private Tensor Conv(ConvGraphOp op, Tensor x)
    {
        var conv = convs[op.Module];
        var (x2, pad) = Pad(x, op, 0);
        return nn.functional.conv2d(x2, conv.weight!, conv.bias, strides: op.Stride, padding: pad, dilation: op.Dilation, groups: op.Group);
    }

    private static Tensor MaxPool(ConvGraphOp op, Tensor x)
    {
        var (x2, pad) = Pad(x, op, double.NegativeInfinity);
        return nn.functional.max_pool2d(x2, op.Kernel, op.Stride, pad);
    }

    // ONNX pads [top, left, bottom, right]: symmetric ones go to the operator, asymmetric ones are applied first.
    private static (Tensor X, long[] Pad) Pad(Tensor x, ConvGraphOp op, double value)
    {
        var pads = op.SamePadding is null ? op.Pads : SamePads(x, op);
        if (pads[0] == pads[2] && pads[1] == pads[3]) return (x, new[] { pads[0], pads[1] });
        return (nn.functional.pad(x, new[] { pads[1], pads[3], pads[0], pads[2] }, value: value), new long[] { 0, 0 });
    }

    // "same" padding: output ⌈in / stride⌉, total pad (out − 1)·stride + (k − 1)·dilation + 1 − in, odd pixel before or after.
    private static long[] SamePads(Tensor x, ConvGraphOp op)
    {
        var p = new long[4];
        for (int axis = 0; axis < 2; axis++)
        {
            long size = x.shape[2 + axis], s = op.Stride[axis], k = op.Kernel[axis], d = op.Dilation[axis];
            long total = Math.Max(0, ((size + s - 1) / s - 1) * s + (k - 1) * d + 1 - size);
            long before = op.SamePadding == "lower" ? (total + 1) / 2 : total / 2;
            p[axis] = before;
            p[axis + 2] = total - before;
        }
        return p;
    }
}

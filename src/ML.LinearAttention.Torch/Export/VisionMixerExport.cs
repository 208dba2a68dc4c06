using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// The ONNX form of the 2D-aware image mechanisms that can be exported (MALA, the default image mechanism), and the
/// depthwise convolution over the token grid they and the position terms share. Image tokens are never padded, so these
/// follow the mixers' unmasked path: every mean runs over all T tokens of the grid.
/// </summary>
internal static class VisionMixerExport
{
    /// <summary>Registry names of the image-only mechanisms written here.</summary>
    public static readonly IReadOnlyList<string> Supported = new[] { "mala" };

    /// <summary>LocalConv.Depthwise on a grid: x [B, T, C] as a [B, C, h, w] map, a k×k depthwise convolution with zero
    /// padding k/2, back to [B, T, C].</summary>
    public static string DepthwiseOnGrid(OnnxGraphBuilder g, string x, Tensor weight, Tensor? bias, string name, int channels, (int Height, int Width) grid)
    {
        long k = weight.shape[2];
        var map = g.Reshape(g.Transpose(x, 0, 2, 1), 0, channels, grid.Height, grid.Width);
        var inputs = bias is null
            ? new[] { map, g.Initializer(name + ".weight", weight) }
            : new[] { map, g.Initializer(name + ".weight", weight), g.Initializer(name + ".bias", bias) };
        var y = g.Node("Conv", inputs, ("kernel_shape", new[] { k, k }), ("pads", new[] { k / 2, k / 2, k / 2, k / 2 }), ("group", (long)channels));
        return g.Transpose(g.Reshape(y, 0, 0, -1), 0, 2, 1);
    }

    /// <summary>MalaMixer.forward on [B, T, C] over the grid (MalaKernels.Bidirectional without a mask).</summary>
    public static string Mala(ExportContext ctx, string x, string prefix, MalaOptions options, MixerConfig config, (int Height, int Width) grid)
    {
        var g = ctx.Graph;
        int c = config.ModelDim, h = config.NumHeads, d = config.HeadDim;
        long t = (long)grid.Height * grid.Width;
        var parts = ctx.Linear(x, prefix + ".qkvo");
        string Part(int i) => g.Slice(parts, (long)i * c, (long)(i + 1) * c, -1);
        var v = Part(2);
        var q = g.Add(g.Node("Elu", new[] { g.SplitHeads(Part(0), h, d) }, ("alpha", 1.0f)), g.Scalar(1));
        var k = g.Add(g.Node("Elu", new[] { g.SplitHeads(Part(1), h, d) }, ("alpha", 1.0f)), g.Scalar(1));
        var vh = g.SplitHeads(v, h, d);

        double s = 1.0 / Math.Sqrt(d);
        var n = g.Scalar(t);
        var keyMean = g.Transpose(g.Div(g.ReduceSum(k, true, 2), n), 0, 1, 3, 2);              // [B, H, D, 1]
        var z = g.Mul(g.MatMul(q, keyMean), g.Scalar(s));                                       // [B, H, T, 1]
        var valueMean = g.Div(g.ReduceSum(vh, true, 2), n);                                     // [B, H, 1, D]
        if (options.Rope)
        {
            using var scope = NewDisposeScope();
            var (cos, sin) = Rope.Tables(t, d, grid, CPU);
            var cosName = g.Initializer(prefix + ".rope_cos", cos);
            var sinName = g.Initializer(prefix + ".rope_sin", sin);
            q = RotateEveryTwo(g, q, cosName, sinName, d);
            k = RotateEveryTwo(g, k, cosName, sinName, d);
        }
        var state = g.MatMul(g.Transpose(k, 0, 1, 3, 2), g.Div(g.Mul(vh, g.Scalar(s)), n));   // [B, H, D, D]
        var gain = g.Add(g.Scalar(1), g.Div(g.Scalar(1), g.Add(z, g.Scalar(MalaKernels.DefaultEps))));
        var o = g.Sub(g.Mul(g.MatMul(q, state), gain), g.Mul(z, valueMean));
        o = g.MergeHeads(o, c);
        if (options.LepeKernel > 0)
            o = g.Add(o, DepthwiseOnGrid(g, v, ctx.Weight(prefix + ".lepe.weight"), ctx.OptionalWeight(prefix + ".lepe.bias"), prefix + ".lepe", c, grid));
        if (options.OutputGate) o = g.Mul(o, Part(3));
        return ctx.Linear(o, prefix + ".proj");
    }

    // Rotary.ApplyTables, interleaved layout: x·cos + (−x₂, x₁)·sin for each channel pair (2i, 2i+1).
    private static string RotateEveryTwo(OnnxGraphBuilder g, string x, string cos, string sin, int d)
    {
        var pairs = g.Reshape(x, 0, 0, 0, d / 2, 2);
        var rotated = g.Reshape(g.Concat(-1, g.Neg(g.Slice(pairs, 1, 2, -1)), g.Slice(pairs, 0, 1, -1)), 0, 0, 0, d);
        return g.Add(g.Mul(x, cos), g.Mul(rotated, sin));
    }
}

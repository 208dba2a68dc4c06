using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using TorchSharp.Modules;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// The ONNX form of <see cref="MomentProbingHead"/>: the first-order classifier on the pooled vector averaged with the
/// second-order one on the cross-covariances of projected head pairs (masked, centred, L2-normalised over rows), two
/// stride-2 3×3 convolutions with a GELU between them, and the second-order LayerNorm where the head has one.
/// </summary>
internal static class MomentProbingExport
{
    // p: the head's path in the model (a SequenceModel's probe_head, a VisionModel's mp_head).
    public static string Emit(ExportContext ctx, MomentProbingHead head, string states, string pooled, string p = "probe_head")
    {
        var g = ctx.Graph;
        var (options, skipFirst) = head.Settings;
        var first = ctx.Linear(ctx.HasModule(p + ".fc_norm") ? ctx.LayerNorm(pooled, p + ".fc_norm") : pooled, p + ".classifier1");

        int h = options.Heads, d = options.HeadDim;
        var projected = g.Reshape(ctx.Linear(states, p + ".proj"), 0, 0, h, d);
        var x = g.Transpose(ctx.LayerNorm(projected, p + ".ln"), 0, 2, 1, 3);                   // [B, H, T, d]
        var m = ctx.HeadTokenMask;                                                               // [B, 1, T, 1]
        if (skipFirst)
        {
            var notFirst = g.Cast(g.Node("Greater", new[] { ctx.Positions, g.Ints(0) }), OnnxElementType.Float);
            m = g.Mul(m, g.Unsqueeze(notFirst, 1));                                              // [T, 1] broadcast
        }
        var n = g.Max(g.ReduceSum(m, true, 2), g.Scalar(1));                                     // [B, 1, 1, 1]
        x = g.Mul(x, m);
        var mean = options.Centering == CovarianceCentering.Global
            ? g.Div(g.ReduceSum(x, true, 2, 3), g.Mul(n, g.Scalar(d)))
            : g.Div(g.ReduceSum(x, true, 2), n);
        x = g.Mul(g.Sub(x, mean), m);
        var pairs = options.HeadPairs();
        var a = g.Gather(x, g.Ints(pairs.Select(q => (long)q.First).ToArray()), axis: 1);
        var b = g.Gather(x, g.Ints(pairs.Select(q => (long)q.Second).ToArray()), axis: 1);
        var cov = g.Div(g.MatMul(g.Transpose(a, 0, 1, 3, 2), b), n);                           // [B, P, d, d]
        var norm = g.Node("Sqrt", new[] { g.ReduceSum(g.Mul(cov, cov), true, 2) });
        cov = g.Div(cov, g.Max(norm, g.Scalar(1e-12)));                                          // F.normalize(p=2, dim=2)

        var maps = Conv(ctx, g.Gelu(Conv(ctx, cov, p + ".conv1")), p + ".conv2");
        var features = g.Node("Flatten", new[] { maps }, ("axis", 1));
        if (ctx.HasModule(p + ".fc_norm2")) features = ctx.LayerNorm(features, p + ".fc_norm2");
        var second = ctx.Linear(features, p + ".classifier2");
        return g.Div(g.Add(first, second), g.Scalar(2));
    }

    private static string Conv(ExportContext ctx, string x, string path)
    {
        var conv = (Conv2d)ctx.Module(path);
        var g = ctx.Graph;
        return g.Node("Conv", new[] { x, g.Initializer(path + ".weight", conv.weight!) },
            ("kernel_shape", new long[] { 3, 3 }), ("strides", new long[] { 2, 2 }));
    }
}

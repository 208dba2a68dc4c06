using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Attention.Softmax;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// The ONNX form of the token mixers that can be exported: softmax attention (full or windowed, additive −∞ mask),
/// the plain linear family (elu+1, relu, identity, DPFP, T2R, elementwise-product maps; normalized or not, with the
/// per-head output RMSNorm) and Hedgehog's learned softmax map, each as the bidirectional encoder computes it:
/// φ(q)·(φ(k)ᵀv) over the real tokens, divided by φ(q)·Σφ(k) + eps·n. Other mechanisms are refused by name.
/// </summary>
public static class MixerExport
{
    /// <summary>Registry names of the mechanisms the exporter writes.</summary>
    public static readonly IReadOnlyList<string> Supported = new[] { "softmax", "linear", "hedgehog" };

    /// <summary>Throws <see cref="NotSupportedException"/> naming <paramref name="mechanism"/> (layer <paramref name="layer"/>)
    /// when it cannot be exported, listing those that can.</summary>
    public static void CheckSupported(string mechanism, int layer, bool causal = false)
    {
        if (!Supported.Contains(mechanism))
            throw new NotSupportedException($"Attention mechanism '{mechanism}' (layer {layer}) cannot be exported to ONNX. " +
                                            $"Exportable mechanisms: {string.Join(", ", Supported)} (and hybrids of them). " +
                                            "Train with one of these, or score this model with TorchSharp.");
        if (causal) throw new NotSupportedException($"Layer {layer} is causal; the ONNX export writes bidirectional encoders only.");
    }

    internal static string Emit(ExportContext ctx, string x, string prefix, string mechanism, MixerOptions options, MixerConfig config, double? ropeTheta)
    {
        CheckSupported(mechanism, config.LayerIndex, config.Causal);
        var g = ctx.Graph;
        int h = config.NumHeads, d = config.HeadDim;
        var q = g.SplitHeads(ctx.Linear(x, prefix + ".q_proj"), h, d);
        var k = g.SplitHeads(ctx.Linear(x, prefix + ".k_proj"), h, d);
        var v = g.SplitHeads(ctx.Linear(x, prefix + ".v_proj"), h, d);
        if (ropeTheta is { } theta) { q = ctx.Rotary(q, d, theta); k = ctx.Rotary(k, d, theta); }
        var o = mechanism switch
        {
            "softmax" => Softmax(ctx, q, k, v, d, ((SoftmaxOptions)options).Window),
            "linear" => PlainLinear(ctx, q, k, v, prefix, (LinearMixerOptions)options, d),
            "hedgehog" => Hedgehog(ctx, q, k, v, prefix),
            _ => throw new NotSupportedException(mechanism),
        };
        return ctx.ZeroPadded(ctx.Linear(g.MergeHeads(o, config.ModelDim), prefix + ".o_proj"));
    }

    // SoftmaxKernels.Attention: scores over allowed keys (real keys, within the window) plus the diagonal, so that a
    // padded query row is never all −∞.
    private static string Softmax(ExportContext ctx, string q, string k, string v, int d, int window)
    {
        var g = ctx.Graph;
        var scores = g.Mul(g.MatMul(q, g.Transpose(k, 0, 1, 3, 2)), g.Scalar(1 / Math.Sqrt(d)));
        var i = g.Unsqueeze(ctx.Positions, 1);                                          // [T, 1]
        var j = g.Unsqueeze(ctx.Positions, 0);                                          // [1, T]
        var diagonal = g.Node("Equal", new[] { i, j });
        var allowed = ctx.KeyMask;                                                      // [B, 1, 1, T]
        if (window > 0)
        {
            var distance = g.Node("Abs", new[] { g.Sub(i, j) });
            var band = g.Node("LessOrEqual", new[] { distance, g.Ints(window) });
            allowed = g.Node("And", new[] { allowed, band });
        }
        allowed = g.Node("Or", new[] { allowed, diagonal });
        var bias = g.Where(allowed, g.Scalar(0), g.Scalar(double.NegativeInfinity));
        var o = g.MatMul(g.Softmax(g.Add(scores, bias)), v);
        return ctx.ZeroPadded(o, heads: true);
    }

    private static string PlainLinear(ExportContext ctx, string q, string k, string v, string prefix, LinearMixerOptions o, int d)
    {
        var map = LearnableFeatureMap.Normalize(o.FeatureMap);
        bool learned = map is "t2r" or "elementwise_product";
        var keyMap = learned && !o.TieFeatureMaps ? prefix + ".k_map" : prefix + ".q_map";
        var fq = FeatureMap(ctx, q, map, prefix + ".q_map", o.DpfpNu, d);
        var fk = FeatureMap(ctx, k, map, keyMap, o.DpfpNu, d);
        var y = Bidirectional(ctx, fq, fk, v, o.Normalize);
        return o.OutputNorm ? ctx.RmsNorm(y, prefix + ".out_norm") : y;
    }

    // HedgehogFeatureMap: per head [softmax(xW), softmax(−xW)] with W [H, D, F].
    private static string Hedgehog(ExportContext ctx, string q, string k, string v, string prefix)
    {
        var keyMap = ctx.OptionalWeight(prefix + ".k_map.weight") is null ? prefix + ".q_map" : prefix + ".k_map";
        string Map(string x, string path)
        {
            var g = ctx.Graph;
            var y = g.MatMul(x, g.Initializer(path + ".weight", ctx.Weight(path + ".weight")));   // [B, H, T, D] @ [H, D, F]
            return g.Concat(-1, g.Softmax(y), g.Softmax(g.Neg(y)));
        }
        return Bidirectional(ctx, Map(q, prefix + ".q_map"), Map(k, keyMap), v, normalize: true);
    }

    private static string FeatureMap(ExportContext ctx, string x, string map, string path, int nu, int d)
    {
        var g = ctx.Graph;
        switch (map)
        {
            case "elu": return g.Add(g.Node("Elu", new[] { x }, ("alpha", 1.0f)), g.Scalar(1));
            case "relu": return g.Relu(x);
            case "identity": return x;
            case "t2r": return g.Relu(ctx.Linear(x, path + ".layer"));
            case "elementwise_product": return g.Mul(ctx.Linear(x, path + ".layer1"), ctx.Linear(x, path + ".layer2"));
            case "dpfp":
                // FeatureMapKernels.Dpfp: r = [relu(x), relu(−x)]; block j−1 of the output is r · roll(r, j).
                var r = g.Concat(-1, g.Relu(x), g.Relu(g.Neg(x)));
                long n = 2L * d;
                var gather = Enumerable.Range(1, nu).SelectMany(j => Enumerable.Range(0, (int)n).Select(i => (((long)i - j) % n + n) % n)).ToArray();
                var repeated = g.Node("Tile", new[] { r, g.Ints(1, 1, 1, nu) });
                return g.Mul(repeated, g.Gather(r, g.Ints(gather), axis: -1));
            default: throw new NotSupportedException($"Feature map '{map}' cannot be exported.");
        }
    }

    // LinearAttentionKernels.Bidirectional: keys zeroed at padding, state φ(k)ᵀv, normalizer φ(q)·Σφ(k) + eps·n.
    private static string Bidirectional(ExportContext ctx, string fq, string fk, string v, bool normalize)
    {
        var g = ctx.Graph;
        fk = ctx.ZeroPadded(fk, heads: true);
        var state = g.MatMul(g.Transpose(fk, 0, 1, 3, 2), v);                          // [B, H, F, Dv]
        var num = g.MatMul(fq, state);
        string o;
        if (normalize)
        {
            var keySum = g.Transpose(g.ReduceSum(fk, true, 2), 0, 1, 3, 2);             // [B, H, F, 1]
            var den = g.MatMul(fq, keySum);                                             // [B, H, T, 1]
            o = g.Div(num, g.Add(den, g.Mul(ctx.ValidCount, g.Scalar(LinearAttentionKernels.DefaultEps))));
        }
        else o = g.Div(num, ctx.ValidCount);
        return ctx.ZeroPadded(o, heads: true);
    }
}

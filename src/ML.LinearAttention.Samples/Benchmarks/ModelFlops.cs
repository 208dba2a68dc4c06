using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.SimpleGla;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Encoder;
using KernelOptions = Microsoft.ML.LinearAttention.Attention.PlainLinear.LinearMixerOptions;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// Model FLOPs of training the encoder, counted analytically (the PaLM / Megatron convention, as used for model FLOP
/// utilisation): a multiply-add is 2 FLOPs, backward costs twice the forward, recomputation (activation checkpointing,
/// flash attention's backward) is not counted, elementwise work (norms, activations, rotary, gates) is ignored.
/// <code>
/// training FLOPs per token = 6 · N  +  3 · Σ_layers A(layer, T)
/// </code>
/// N = weight-matrix parameters applied to every token (projections, FFN, short convolutions, feature-map weights,
/// the head; embeddings excluded: they are lookups). A = forward FLOPs per token of the layer's attention kernel,
/// everything between the projections; with H heads, head size D (Dk, Dv for expanded keys/values), chunk c:
/// <list type="bullet">
/// <item>softmax: 4·T·D·H (scores QKᵀ and the weighted sum PV, non-causal); window w: 4·min(T, 2w+1)·D·H.</item>
/// <item>linear (feature size F, F = D for relu/elu/identity): 4·F·D·H for the state KᵀV and the read-out Q·S,
/// + 4·F·H for the normaliser. Learned feature maps (t2r, hedgehog's [H, D, F'] weights) are matrices applied to every
/// token, so they are counted in N.</item>
/// <item>hedgehog: F' = FeatureDim (D by default), F = 2·F' ([softmax(xW), softmax(−xW)]); as linear.</item>
/// <item>simple_gla (two chunkwise scans): 2 · [2·c·(Dk + Dv) + 4·Dk·Dv] · H.</item>
/// <item>gated_deltanet (two chunkwise WY scans): 2 · [6·c·Dk + 4·c·Dv + c²/3 + 6·Dk·Dv] · H
/// (KKᵀ, W, QKᵀ; U and the intra-chunk output; the triangular solve; W·S, Q·S and the state update).</item>
/// <item>any other mechanism: 0 (its MFU then counts the projections and FFN only; marked in the tables).</item>
/// </list>
/// </summary>
public static class ModelFlops
{
    /// <summary>Forward FLOPs per token of one layer's attention kernel; <paramref name="known"/> is false when no formula exists.</summary>
    public static double AttentionForwardPerToken(string mechanism, MixerOptions? options, long t, int heads, int headDim, out bool known)
    {
        known = true;
        double h = heads, d = headDim;
        switch (mechanism)
        {
            case "softmax":
            {
                int window = (options as SoftmaxOptions)?.Window ?? 0;
                double keys = window > 0 ? Math.Min(t, 2L * window + 1) : t;
                return 4 * keys * d * h;
            }
            case "swa":
            {
                int window = (options as SlidingWindowOptions)?.Window ?? new SlidingWindowOptions().Window;
                return 4 * Math.Min(t, 2L * window + 1) * d * h;
            }
            case "linear":
            {
                var o = options as KernelOptions ?? new KernelOptions();
                string map = o.FeatureMap.ToLowerInvariant();
                double f = map switch
                {
                    "dpfp" => 2 * d * o.DpfpNu,
                    "t2r" => o.FeatureDim > 0 ? o.FeatureDim : d,
                    _ => d,
                };
                return 4 * f * d * h + (o.Normalize ? 4 * f * h : 0);
            }
            case "hedgehog":
            {
                var o = options as HedgehogOptions ?? new HedgehogOptions();
                double half = o.FeatureDim > 0 ? o.FeatureDim : d, f = 2 * half;
                return 4 * f * d * h + 4 * f * h;
            }
            case "simple_gla":
            {
                var o = options as SimpleGlaOptions ?? new SimpleGlaOptions();
                double dk = d * o.ExpandK, dv = d * o.ExpandV, c = o.ChunkSize;
                return 2 * (2 * c * (dk + dv) + 4 * dk * dv) * h;
            }
            case "gated_deltanet":
            {
                var o = options as GatedDeltaNetOptions ?? new GatedDeltaNetOptions();
                double dk = d * o.ExpandK, dv = d * o.ExpandV, c = o.ChunkSize;
                return 2 * (6 * c * dk + 4 * c * dv + c * c / 3 + 6 * dk * dv) * h;
            }
            default:
                known = false;
                return 0;
        }
    }

    /// <summary>
    /// Training FLOPs per token: 6·<paramref name="matrixParameters"/> + 3·Σ attention forward FLOPs of the layers.
    /// <paramref name="allKnown"/> is false when a layer's mechanism has no attention formula.
    /// </summary>
    public static double TrainingPerToken(long matrixParameters, IEnumerable<LayerMixer> layers, long t, int heads, int headDim, out bool allKnown)
    {
        double attention = 0;
        allKnown = true;
        foreach (var layer in layers)
        {
            attention += AttentionForwardPerToken(layer.Name, layer.Options, t, heads, headDim, out bool known);
            allKnown &= known;
        }
        return 6.0 * matrixParameters + 3.0 * attention;
    }

    /// <summary>
    /// Weight-matrix parameters applied to every token of a <paramref name="config"/> encoder: every parameter of
    /// rank ≥ 2 of the blocks and the head, without embeddings. Builds the blocks' distinct mixers once each (CPU).
    /// </summary>
    public static long MatrixParameters(EncoderConfig config)
    {
        long total = 0;
        var perMixer = new Dictionary<string, long>();
        for (int i = 0; i < config.NumLayers; i++)
        {
            var (name, options) = config.MixerFor(i);
            string key = name + MixerRegistry.SerializeOptions(options);
            if (!perMixer.TryGetValue(key, out long count))
            {
                using var block = new EncoderBlock(MixerRegistry.Create(name, new MixerConfig(config.ModelDim, config.NumHeads, LayerIndex: i, NumLayers: config.NumLayers), options),
                    config.ModelDim, config.FfnMultiplier, 0);
                count = block.parameters().Where(p => p.dim() >= 2).Sum(p => p.numel());
                perMixer[key] = count;
            }
            total += count;
        }
        long c = config.ModelDim;
        return total + c * c + c * config.Outputs + (long)config.SideFeatures * c; // head dense + head out (+ side projection)
    }
}

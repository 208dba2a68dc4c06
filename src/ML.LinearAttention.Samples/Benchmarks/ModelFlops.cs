using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;

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
/// everything between the projections, as the mechanism declares it in its registry entry
/// (<see cref="MixerInfo.AttentionFlops"/>, written next to its benchmark cases in its folder). A mechanism registered
/// without a formula counts 0 (its MFU then counts the projections and FFN only; marked in the tables).
/// </summary>
public static class ModelFlops
{
    /// <summary>Forward FLOPs per token of one layer's attention kernel; <paramref name="known"/> is false when the mechanism declares no formula.</summary>
    public static double AttentionForwardPerToken(string mechanism, MixerOptions? options, long t, int heads, int headDim, out bool known,
        int layerIndex = 0, int numLayers = 1)
    {
        var flops = MixerRegistry.Get(mechanism).AttentionFlops;
        known = flops is not null;
        return flops?.Invoke(new FlopShape(t, heads, headDim, layerIndex, numLayers), options) ?? 0;
    }

    /// <summary>
    /// Training FLOPs per token: 6·<paramref name="matrixParameters"/> + 3·Σ attention forward FLOPs of the layers.
    /// <paramref name="allKnown"/> is false when a layer's mechanism has no attention formula.
    /// </summary>
    public static double TrainingPerToken(long matrixParameters, IEnumerable<LayerMixer> layers, long t, int heads, int headDim, out bool allKnown)
    {
        double attention = 0;
        allKnown = true;
        var all = layers.ToList();
        for (int i = 0; i < all.Count; i++)
        {
            attention += AttentionForwardPerToken(all[i].Name, all[i].Options, t, heads, headDim, out bool known, i, all.Count);
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

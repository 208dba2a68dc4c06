using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Decay;

/// <summary>Dimension helpers for mixers whose key/value widths are C × expand.</summary>
internal static class DecayDims
{
    /// <summary>C·expand per head; throws naming the option when it is not a positive integer divisible by the heads.</summary>
    internal static int PerHead(MixerConfig config, double expand, string option)
    {
        double total = config.ModelDim * expand;
        int rounded = (int)Math.Round(total);
        if (expand <= 0 || Math.Abs(total - rounded) > 1e-9 || rounded % config.NumHeads != 0 || rounded == 0)
            throw new ArgumentException($"{option} = {expand} gives a width of {total} for hidden size {config.ModelDim}; it must be a positive integer " +
                                        $"divisible by the {config.NumHeads} heads. Choose {option} so that hidden size × {option} is a multiple of the head count.");
        return rounded / config.NumHeads;
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Decay;

/// <summary>
/// fla's <c>ShortConvolution</c>: a depthwise causal Conv1d over time (kernel <c>kernelSize</c>, left padding) followed by
/// SiLU. Padded inputs are zeroed first (fla multiplies by the mask), so garbage in a padded tail reaches nothing.
/// Shapes: x [B, T, C], mask [B, T] bool or null → [B, T, C]. The convolution stays causal (left-looking) in the
/// bidirectional forms too: the reference layers are causal, and the reversed scan already supplies right context.
/// </summary>
internal sealed class ShortConvolution : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly Conv1d conv;
    private readonly long _kernel;

    internal ShortConvolution(long channels, long kernelSize, bool bias) : base(nameof(ShortConvolution))
    {
        if (kernelSize < 1) throw new ArgumentOutOfRangeException(nameof(kernelSize), kernelSize, "The short convolution size must be at least 1 (fla's default is 4).");
        conv = nn.Conv1d(channels, channels, kernelSize, padding: kernelSize - 1, groups: channels, bias: bias);
        _kernel = kernelSize;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        long t = x.shape[1];
        var y = conv.forward(Heads.ZeroPadded(x, keyPaddingMask).transpose(1, 2)).narrow(2, 0, t).transpose(1, 2);
        return nn.functional.silu(y).MoveToOuterDisposeScope();
    }
}

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

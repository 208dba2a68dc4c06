using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// fla's <c>ShortConvolution</c>: a depthwise convolution over time of width K (4 by default) followed by SiLU (optional),
/// on x [B, T, C] → [B, T, C]. Causal (left padding K−1) by default; centred (K−1−⌊(K−1)/2⌋ tokens of left context,
/// ⌊(K−1)/2⌋ of right context, like ViG's locality-injecting depthwise conv) with <c>causal: false</c>. The decay
/// mixers (RetNet, GLA, simple GLA, mLSTM) keep it causal in their bidirectional forms too, as their reference layers
/// are causal and the reversed scan already supplies right context; the delta-rule mixers centre it there.
/// <para>Padded positions (mask [B, T] bool, true = real) are zeroed before the convolution, as fla multiplies by the
/// mask, so garbage in a padded tail reaches no real token; pass null when the input is already zeroed.</para>
/// <para>Parameters <c>weight</c> [C, 1, K] and <c>bias</c> [C] (fla's layout, PyTorch <c>nn.Conv1d</c> initialisation
/// uniform ±1/√K).</para>
/// </summary>
public sealed class ShortConvolution : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly int _size;
    private readonly bool _causal;
    private readonly bool _silu;

    public ShortConvolution(long channels, int kernelSize, bool causal = true, bool useBias = false, bool silu = true) : base(nameof(ShortConvolution))
    {
        if (kernelSize < 1) throw new ArgumentOutOfRangeException(nameof(kernelSize), kernelSize, "The short convolution size must be at least 1 (fla's default is 4).");
        double bound = 1.0 / Math.Sqrt(kernelSize);
        weight = new Parameter(torch.empty(channels, 1, kernelSize).uniform_(-bound, bound));
        if (useBias) bias = new Parameter(torch.empty(channels).uniform_(-bound, bound));
        _size = kernelSize;
        _causal = causal;
        _silu = silu;
        RegisterComponents();
    }

    /// <summary>x [B, T, C], mask [B, T] bool or null → [B, T, C].</summary>
    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        long c = x.shape[2];
        int right = _causal ? 0 : (_size - 1) / 2, left = _size - 1 - right;
        var xt = nn.functional.pad(Heads.ZeroPadded(x, keyPaddingMask).transpose(1, 2), new long[] { left, right });
        var y = nn.functional.conv1d(xt, weight.to(x.dtype), bias?.to(x.dtype), groups: c).transpose(1, 2);
        return (_silu ? nn.functional.silu(y) : y).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// proj(x), then the convolution when there is one (with its SiLU), else SiLU when <paramref name="siluWithoutConv"/>
    /// (fla's q/k/v path). x [B, T, C]; mask [B, T] bool or null (null when x is already zeroed at padded positions).
    /// </summary>
    internal static Tensor Project(nn.Module<Tensor, Tensor> proj, ShortConvolution? conv, Tensor x, Tensor? keyPaddingMask, bool siluWithoutConv)
    {
        var y = proj.forward(x);
        if (conv is not null) return conv.forward(y, keyPaddingMask);
        return siluWithoutConv ? nn.functional.silu(y) : y;
    }
}

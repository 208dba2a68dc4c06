using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Soft;

/// <summary>Options of SOFT (defaults from <c>fudan-zvg/SOFT</c> <c>softmax_free_transformer.py</c>).</summary>
public sealed record SoftOptions : MixerOptions
{
    /// <summary>
    /// Number of landmarks m (a perfect square on a grid). Reference: the strided landmark conv gives 7×7 = 49 in every
    /// stage (56/8, 28/4, 14/2).
    /// </summary>
    public int NumLandmarks { get; init; } = 49;
    /// <summary>Newton–Schulz iterations of the pseudo-inverse. Reference: 20.</summary>
    public int NewtonIterations { get; init; } = SoftKernels.DefaultIterations;
    /// <summary>Kernel of the per-head depthwise convolution on v (k×k on a grid, k along text); 0 = off. Reference: 3.</summary>
    public int ConvKernel { get; init; } = 3;
}

/// <summary>
/// SOFT token mixer: q = W_q x (keys tied to queries), v = W_v x; landmarks = GELU(LayerNorm(W_l · masked adaptive
/// mean of q/D^¼ over real tokens)) → <see cref="SoftKernels"/> → + conv(v) → proj.
/// <para>Difference from the reference: landmarks come from masked adaptive average pooling followed by a shared
/// D×D projection instead of a strided ratio×ratio convolution, so their number is fixed and padding never enters them
/// (a strided convolution needs a fixed grid and would mix padding into landmarks).</para>
/// </summary>
public sealed class SoftMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly Linear landmark_proj;
    private readonly LayerNorm landmark_norm;
    private readonly DepthwiseConv? conv;
    private readonly SoftOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "v_proj", "proj" };

    public SoftMixer(MixerConfig config, SoftOptions options) : base(nameof(SoftMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.NumLandmarks <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.NumLandmarks, "SoftOptions.NumLandmarks must be positive (reference: 49).");
        if (options.NewtonIterations < 1) throw new ArgumentOutOfRangeException(nameof(options), options.NewtonIterations, "SoftOptions.NewtonIterations must be at least 1 (reference: 20).");
        if (options.ConvKernel < 0 || (options.ConvKernel > 0 && options.ConvKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.ConvKernel, "SoftOptions.ConvKernel must be 0 (off) or a positive odd number such as 3.");
        _options = options;
        int c = config.ModelDim, d = config.HeadDim;
        q_proj = nn.Linear(c, c);
        v_proj = nn.Linear(c, c);
        proj = nn.Linear(c, c);
        landmark_proj = nn.Linear(d, d, hasBias: false);
        landmark_norm = nn.LayerNorm(d);
        if (options.ConvKernel > 0) conv = new DepthwiseConv(config.NumHeads, options.ConvKernel, hasBias: false, interleave: d);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        long b = x.shape[0], t = x.shape[1];
        var q = Heads.Split(q_proj.forward(x), h);
        var vFlat = v_proj.forward(x);
        var (w, valid) = AdaptivePool.Weights(keyPaddingMask, b, t, _options.NumLandmarks, Grid, x.device);
        var pooled = AdaptivePool.Pool(SoftKernels.Scale(q), w);                                // [B, H, m, D]
        var landmarks = nn.functional.gelu(landmark_norm.forward(landmark_proj.forward(pooled)));
        var o = Heads.Merge(SoftKernels.Attention(q, landmarks, Heads.Split(vFlat, h), valid, keyPaddingMask, _options.NewtonIterations));
        if (conv is not null) o = o + conv.Forward(vFlat, keyPaddingMask, Grid);
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

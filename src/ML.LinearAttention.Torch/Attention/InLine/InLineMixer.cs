using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.InLine;

/// <summary>Options of InLine attention (defaults from <c>LeapLabTHU/InLine</c> <c>inline_deit.py</c>).</summary>
public sealed record InLineOptions : MixerOptions
{
    /// <summary>Kernel function φ on q and k: "identity" (reference DeiT default), "relu", "leakyrelu" or "exp".</summary>
    public string FeatureMap { get; init; } = "identity";
    /// <summary>
    /// Kernel size of the local residual: a depthwise convolution on v whose k×k kernel (k along text) is predicted per
    /// sample from the mean token by Conv1x1(groups = heads) → GELU → Conv1x1. 0 = off. Reference: 3.
    /// </summary>
    public int ResidualKernel { get; init; } = 3;
    /// <summary>Bias on the qkv projection (the DeiT models pass qkv_bias = True).</summary>
    public bool QkvBias { get; init; } = true;
}

/// <summary>
/// InLine token mixer: qkv → φ → <see cref="InLineKernels"/> (+ the predicted local residual on v) → proj.
/// </summary>
public sealed class InLineMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly Conv1d? residual_in;
    private readonly Conv1d? residual_out;
    private readonly InLineOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkv", "proj" };

    public InLineMixer(MixerConfig config, InLineOptions options) : base(nameof(InLineMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        _ = InLineKernels.FeatureMap(options.FeatureMap, torch.zeros(1));
        if (options.ResidualKernel < 0 || (options.ResidualKernel > 0 && options.ResidualKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.ResidualKernel, "InLineOptions.ResidualKernel must be 0 (off) or a positive odd number such as 3.");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads, r = options.ResidualKernel;
        qkv = nn.Linear(c, 3 * c, hasBias: options.QkvBias);
        proj = nn.Linear(c, c);
        if (r > 0)
        {
            residual_in = nn.Conv1d(c, c, 1, groups: h);
            residual_out = nn.Conv1d(c, (long)c * r * r, 1, groups: h);
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads, c = Config.ModelDim;
        long b = x.shape[0];
        var parts = qkv.forward(x).chunk(3, -1);
        var q = Heads.Split(InLineKernels.FeatureMap(_options.FeatureMap, parts[0]), h);
        var k = Heads.Split(InLineKernels.FeatureMap(_options.FeatureMap, parts[1]), h);
        var o = Heads.Merge(InLineKernels.Bidirectional(q, k, Heads.Split(parts[2], h), keyPaddingMask));
        if (residual_in is not null && residual_out is not null)
        {
            int r = _options.ResidualKernel;
            // The residual kernel is predicted from the mean of the real tokens of each sample.
            var count = keyPaddingMask is null
                ? torch.full(new long[] { b, 1 }, (double)x.shape[1], dtype: x.dtype, device: x.device)
                : keyPaddingMask.sum(1, type: x.dtype).clamp_min(1).view(b, 1);
            var mean = Heads.ZeroPadded(x, keyPaddingMask).sum(1) / count;
            var weight = residual_out.forward(nn.functional.gelu(residual_in.forward(mean.unsqueeze(-1)))).view(b, c, r, r);
            o = o + LocalConv.DepthwisePerSample(parts[2], weight, null, keyPaddingMask, Grid);
        }
        return Heads.ZeroPadded(proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

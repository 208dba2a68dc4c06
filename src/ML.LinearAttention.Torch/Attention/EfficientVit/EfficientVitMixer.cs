using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.EfficientVit;

/// <summary>
/// Options of EfficientViT's LiteMLA (defaults from timm <c>efficientvit_mit.py</c>). The reference uses head
/// dimension 32 (<c>EfficientVitBlock(head_dim=32)</c>): choose NumHeads = ModelDim / 32 to match it.
/// </summary>
public sealed record EfficientVitOptions : MixerOptions
{
    /// <summary>
    /// Kernel of the multi-scale aggregation branch: a depthwise k×k convolution (k along text) on q, k, v followed by a
    /// grouped 1×1 convolution per head; its output forms as many extra heads. 0 = single scale. Reference: scales=(5,).
    /// </summary>
    public int AggregationKernel { get; init; } = 5;
    /// <summary>Added to the denominator. Reference: 1e-5.</summary>
    public double Eps { get; init; } = EfficientVitKernels.DefaultEps;
}

/// <summary>
/// LiteMLA token mixer: qkv → (multi-scale aggregation → extra heads) → ReLU linear attention (fp32) → proj.
/// BatchNorm after the projection is left out (batch statistics over padded token batches are ill-defined); the
/// projection carries a bias instead.
/// </summary>
public sealed class EfficientVitMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> qkv;
    private readonly nn.Module<Tensor, Tensor> proj;
    private readonly DepthwiseConv? aggregate_dw;
    private readonly Conv1d? aggregate_pw;
    private readonly EfficientVitOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "qkv", "proj" };

    public EfficientVitMixer(MixerConfig config, EfficientVitOptions options) : base(nameof(EfficientVitMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.AggregationKernel < 0 || (options.AggregationKernel > 0 && options.AggregationKernel % 2 == 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.AggregationKernel, "EfficientVitOptions.AggregationKernel must be 0 (single scale) or a positive odd number such as 5.");
        if (!(options.Eps > 0)) throw new ArgumentOutOfRangeException(nameof(options), options.Eps, "EfficientVitOptions.Eps must be positive.");
        _options = options;
        int c = config.ModelDim, h = config.NumHeads;
        qkv = nn.Linear(c, 3 * c, hasBias: false);
        if (options.AggregationKernel > 0)
        {
            aggregate_dw = new DepthwiseConv(3 * c, options.AggregationKernel, hasBias: false);
            aggregate_pw = nn.Conv1d(3 * c, 3 * c, 1, groups: 3 * h, bias: false);
        }
        proj = nn.Linear(options.AggregationKernel > 0 ? 2 * c : c, c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var all = qkv.forward(x);                                                    // [B, T, 3C]
        if (aggregate_dw is not null && aggregate_pw is not null)
        {
            var local = aggregate_dw.Forward(all, keyPaddingMask, Grid);
            var mixed = aggregate_pw.forward(local.transpose(1, 2)).transpose(1, 2);  // per-head 1×1 mixing
            all = torch.cat(new[] { all, mixed }, -1);                                // scales become extra heads
        }
        var groups = all.chunk(all.shape[2] / (3L * Config.ModelDim), -1);          // one [q|k|v] block per scale
        var qs = new List<Tensor>(); var ks = new List<Tensor>(); var vs = new List<Tensor>();
        foreach (var g in groups)
        {
            var p = g.chunk(3, -1);
            qs.Add(Heads.Split(p[0], h)); ks.Add(Heads.Split(p[1], h)); vs.Add(Heads.Split(p[2], h));
        }
        var q = nn.functional.relu(torch.cat(qs, 1));
        var k = nn.functional.relu(torch.cat(ks, 1));
        var o = EfficientVitKernels.Bidirectional(q, k, torch.cat(vs, 1), keyPaddingMask, _options.Eps);
        return Heads.ZeroPadded(proj.forward(Heads.Merge(o)), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Performer;

/// <summary>Options of Performer FAVOR+ attention (defaults from lucidrains' <c>performer-pytorch</c> <c>SelfAttention</c>).</summary>
public sealed record PerformerOptions : MixerOptions
{
    /// <summary>Random features m; 0 = ⌊D·ln D⌋ (lucidrains' default, 266 for D = 64; google's default is 256).</summary>
    public int NumFeatures { get; init; }
    /// <summary>Row norms √D instead of chi-distributed norms (the reference's <c>ortho_scaling=1</c>; default 0 = chi).</summary>
    public bool FixedNorm { get; init; }
    /// <summary>Redraw the random features every this many training forward passes (lucidrains: 1000); 0 = never.
    /// Evaluation-mode passes never redraw.</summary>
    public int RedrawInterval { get; init; } = 1000;
    /// <summary>Seed of the first draw; null = libtorch's global generator (seeded by <c>torch.random.manual_seed</c>).</summary>
    public long? Seed { get; init; }
    /// <summary>Added to every feature (lucidrains 1e-4; google 1e-6).</summary>
    public double FeatureEps { get; init; } = PerformerKernels.DefaultFeatureEps;
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>
/// Performer self-attention: q/k/v/out projections with bias (as in the references), FAVOR+ positive orthogonal
/// random features shared by heads, normalized linear attention (bidirectional, or causal chunkwise). The random
/// matrix is a buffer (saved with the model) that <see cref="RedrawFeatures"/> redraws in place.
/// </summary>
public sealed class PerformerMixer : ProjectedMixer
{
    private readonly Tensor projection_matrix;
    private readonly PerformerOptions _options;
    private int _callsSinceRedraw;

    public PerformerMixer(MixerConfig config, PerformerOptions options) : base(nameof(PerformerMixer), config, bias: true)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.NumFeatures < 0) throw new ArgumentOutOfRangeException(nameof(options), options.NumFeatures, "NumFeatures must be 0 (⌊D·ln D⌋) or positive.");
        if (options.RedrawInterval < 0) throw new ArgumentOutOfRangeException(nameof(options), options.RedrawInterval, "RedrawInterval must be 0 (never) or positive.");
        if (!(options.FeatureEps >= 0)) throw new ArgumentOutOfRangeException(nameof(options), options.FeatureEps, "FeatureEps must be non-negative.");
        MixerChecks.ChunkSize(options.ChunkSize, "Performer");
        _options = options;
        NumFeatures = options.NumFeatures == 0 ? PerformerKernels.DefaultNumFeatures(config.HeadDim) : options.NumFeatures;
        projection_matrix = torch.zeros(NumFeatures, config.HeadDim);
        RedrawFeatures(options.Seed);
        RegisterComponents();
    }

    /// <summary>Number of random features m.</summary>
    public int NumFeatures { get; }

    /// <summary>The [m, D] random projection buffer.</summary>
    public Tensor ProjectionMatrix => projection_matrix;

    /// <summary>Draws a new orthogonal random projection in place (same device and dtype); null seed = global generator.</summary>
    public void RedrawFeatures(long? seed = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var generator = seed is null ? null : new Generator((ulong)seed.Value);
        var w = PerformerKernels.OrthogonalRandomMatrix(NumFeatures, Config.HeadDim, _options.FixedNorm, generator);
        projection_matrix.copy_(w);
        _callsSinceRedraw = 0;
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        if (training && _options.RedrawInterval > 0)
        {
            if (_callsSinceRedraw >= _options.RedrawInterval) RedrawFeatures();
            _callsSinceRedraw++;
        }
        return PerformerKernels.Attention(q, k, v, projection_matrix, keyPaddingMask, Config.Causal, _options.FeatureEps, _options.ChunkSize);
    }
}

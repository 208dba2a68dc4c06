using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.TransNormer;

/// <summary>Options of TransNormer NormAttention (defaults of the reference's transnormer_t2 / roberta_transnormer_t2 linear layers).</summary>
public sealed record TransNormerOptions : MixerOptions
{
    /// <summary>φ of q and k: "1+elu" (transnormer_t2, default), "elu" (plain ELU, transnormer_t1), "relu" or "identity".</summary>
    public string FeatureMap { get; init; } = "1+elu";
    /// <summary>"srmsnorm" (no weight; the reference's <c>simplermsnorm</c>, default) or "rmsnorm" (learned weight).</summary>
    public string OutputNorm { get; init; } = "srmsnorm";
    /// <summary>Normalize each head separately (fla style) instead of all channels of a token jointly (reference).</summary>
    public bool NormPerHead { get; init; }
    /// <summary>Norm eps (inside the square root).</summary>
    public double NormEps { get; init; } = TransNormerKernels.DefaultNormEps;
    /// <summary>Chunk length of the causal chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = LinearAttentionKernels.DefaultChunk;
}

/// <summary>
/// TransNormer's NormAttention layer: q/k/v/out projections with bias (fairseq's default; q/k/v Xavier-uniform with
/// gain 1/√2, out Xavier-uniform with zero bias, as the reference initialises them), φ on q and k, linear attention
/// without denominator, SRMSNorm on the output. Bidirectional and causal.
/// <para>Not included: the reference's URPE positional encoding and the block-diagonal softmax "DiagAttention" that
/// the paper uses in the lower half of the layers (a layout choice for hybrid stacks).</para>
/// </summary>
public sealed class TransNormerMixer : ProjectedMixer
{
    private readonly TorchSharp.Modules.Parameter? norm_weight;
    private readonly string _featureMap;
    private readonly TransNormerOptions _options;

    public TransNormerMixer(MixerConfig config, TransNormerOptions options) : base(nameof(TransNormerMixer), config, bias: true)
    {
        ArgumentNullException.ThrowIfNull(options);
        _featureMap = TransNormerKernels.NormalizeMapName(options.FeatureMap);
        var norm = (options.OutputNorm ?? "").Trim().ToLowerInvariant();
        if (norm is not ("srmsnorm" or "rmsnorm"))
            throw new ArgumentException($"Unknown TransNormer output norm '{options.OutputNorm}'. Known norms: srmsnorm, rmsnorm.");
        if (!(options.NormEps > 0)) throw new ArgumentOutOfRangeException(nameof(options), options.NormEps, "NormEps must be positive.");
        MixerChecks.ChunkSize(options.ChunkSize, "TransNormer");
        _options = options;
        if (norm == "rmsnorm")
            norm_weight = new TorchSharp.Modules.Parameter(torch.ones(options.NormPerHead ? config.HeadDim : config.ModelDim));
        using (torch.no_grad())
        {
            foreach (var proj in new[] { q_proj, k_proj, v_proj }) nn.init.xavier_uniform_(((Linear)proj).weight, gain: 1 / Math.Sqrt(2));
            nn.init.xavier_uniform_(((Linear)o_proj).weight);
            ((Linear)o_proj).bias!.zero_();
        }
        RegisterComponents();
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        int h = Config.NumHeads, d = Config.HeadDim;
        // RMSNorm weight as [H, D]: per-token weight [H·D] in Merge's channel order, or one [D] shared by the heads.
        var w = norm_weight is null ? null : _options.NormPerHead ? norm_weight.unsqueeze(0).expand(h, d) : norm_weight.view(h, d);
        return TransNormerKernels.NormAttention(TransNormerKernels.FeatureMap(_featureMap, q), TransNormerKernels.FeatureMap(_featureMap, k), v,
            keyPaddingMask, Config.Causal, w, _options.NormPerHead, _options.NormEps, _options.ChunkSize);
    }
}

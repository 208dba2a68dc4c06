using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.TransNormer;

/// <summary>
/// TransNormer NormAttention (Qin et al., EMNLP 2022, arXiv 2210.10340; reference OpenNLPLab/fairseq-evo
/// <c>NormLinearAttention</c>): O = Norm(φ(Q)(φ(K)ᵀV)), linear attention without a denominator, stabilised by a norm
/// of the output. Shapes: q/k [B, H, T, Dk] (already feature-mapped), v [B, H, T, Dv], mask [B, T] bool (true = real)
/// or null; result [B, H, T, Dv], zero at padded positions.
/// <para>The norm is SRMSNorm (x / rms(x), the reference's <c>simplermsnorm</c>) or RMSNorm (times a learned weight),
/// over all heads' channels of a token jointly as in the reference (H·Dv values), or per head (fla style).
/// The sum over keys is divided by the number of real (causal: visible) tokens, which the norm cancels; it keeps
/// bf16 values in range at long T.</para>
/// </summary>
public static class TransNormerKernels
{
    /// <summary>Default norm eps (the reference adds 1e-8 to the rms; here it sits inside the square root so that the
    /// gradient stays finite at all-zero rows).</summary>
    public const double DefaultNormEps = 1e-8;

    /// <summary>Names accepted by <see cref="FeatureMap"/>.</summary>
    public static readonly IReadOnlyList<string> FeatureMapNames = new[] { "1+elu", "elu", "relu", "identity" };

    /// <summary>
    /// The reference's activations (fairseq-evo <c>get_activation_fn</c>): "1+elu" → 1 + elu(x) (transnormer_t2),
    /// "elu" → elu(x), plain and possibly negative (transnormer_t1; not the "linear" mechanism's elu+1), "relu",
    /// "identity". "elu+1" is accepted for "1+elu".
    /// </summary>
    public static Tensor FeatureMap(string name, Tensor x) => NormalizeMapName(name) switch
    {
        "1+elu" => nn.functional.elu(x, 1.0) + 1,
        "elu" => nn.functional.elu(x, 1.0),
        "relu" => nn.functional.relu(x),
        _ => x.alias(),
    };

    /// <summary>Lower-case canonical map name, or an error listing the known ones.</summary>
    public static string NormalizeMapName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var n = name.Trim().ToLowerInvariant();
        if (n == "elu+1") n = "1+elu";
        if (!FeatureMapNames.Contains(n))
            throw new ArgumentException($"Unknown TransNormer feature map '{name}'. Known maps: {string.Join(", ", FeatureMapNames)} (\"elu\" is plain ELU, as in the reference's transnormer_t1).", nameof(name));
        return n;
    }

    /// <summary>
    /// Fast NormAttention: <see cref="LinearAttentionKernels.Bidirectional"/> or (causal) the chunkwise
    /// <see cref="LinearAttentionKernels.Causal"/> without denominator, then the norm. <c>normWeight</c>: [H, Dv] weight
    /// of RMSNorm, or null for SRMSNorm; <c>normPerHead</c>: normalize each head's Dv channels separately instead of all
    /// H·Dv jointly.
    /// </summary>
    public static Tensor NormAttention(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool causal = false, Tensor? normWeight = null,
        bool normPerHead = false, double normEps = DefaultNormEps, int chunk = LinearAttentionKernels.DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckWeight(v, normWeight);
        using var scope = NewDisposeScope();
        var o = causal
            ? LinearAttentionKernels.Causal(q, k, v, keyPaddingMask, normalize: false, chunk: chunk)
            : LinearAttentionKernels.Bidirectional(q, k, v, keyPaddingMask, normalize: false);
        var y = RmsNorm.Normalize(o, normPerHead ? new long[] { 3 } : new long[] { 1, 3 }, normEps);
        if (normWeight is not null) y = y * normWeight.to(o.dtype).unsqueeze(1);
        return Heads.ZeroPadded(y, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="NormAttention"/>: the explicit T×T kernel and an explicit fp32 norm.</summary>
    public static Tensor NormAttentionNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool causal = false, Tensor? normWeight = null,
        bool normPerHead = false, double normEps = DefaultNormEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        CheckWeight(v, normWeight);
        using var scope = NewDisposeScope();
        var o = (causal
            ? LinearAttentionKernels.CausalNaive(q, k, v, keyPaddingMask, normalize: false)
            : LinearAttentionKernels.BidirectionalNaive(q, k, v, keyPaddingMask, normalize: false)).to(ScalarType.Float32);
        long count = normPerHead ? o.shape[3] : o.shape[1] * o.shape[3];
        var sumSquares = normPerHead ? (o * o).sum(3, keepdim: true) : (o * o).sum(3, keepdim: true).sum(1, keepdim: true);
        var y = o / (sumSquares / count + normEps).sqrt();
        if (normWeight is not null) y = y * normWeight.to(ScalarType.Float32).view(1, normWeight.shape[0], 1, normWeight.shape[1]);
        return Heads.ZeroPadded(y.to(q.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void CheckWeight(Tensor v, Tensor? w)
    {
        if (w is not null && (w.dim() != 2 || w.shape[0] != v.shape[1] || w.shape[1] != v.shape[3]))
            throw new ArgumentException($"The norm weight must be [H, Dv] = [{v.shape[1]}, {v.shape[3]}]; got {Heads.Shape(w)}.");
    }
}

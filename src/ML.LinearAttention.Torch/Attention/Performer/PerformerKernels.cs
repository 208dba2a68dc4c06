using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Performer;

/// <summary>
/// Performer FAVOR+ (Choromanski et al., arXiv 2009.14794): positive orthogonal random features
/// φ(x) = exp(wᵢᵀx' − ‖x'‖²/2)/√m with x' = x·D^(−1/4), so that E[φ(q)·φ(k)] = exp(q·k/√D), then the normalized
/// linear kernel. Follows google-research <c>performer/fast_attention</c> and lucidrains' <c>performer-pytorch</c>:
/// a max is subtracted inside exp (per query row over features; for keys, one constant per row and head), and a
/// small eps is added to every feature. Shapes: q/k [B, H, T, D], v [B, H, T, Dv], projection [m, D] (shared by heads),
/// mask [B, T] bool (true = real) or null; result [B, H, T, Dv], zero at padded positions.
/// </summary>
public static class PerformerKernels
{
    /// <summary>Added to every feature (lucidrains' default; google's softmax kernel uses 1e-6).</summary>
    public const double DefaultFeatureEps = 1e-4;

    // Features are ≥ eps/√m, so φ(q)·φ(k) ≥ eps²; the denominator only needs a guard against rows without real keys.
    private const double DenominatorEps = 1e-12;

    /// <summary>lucidrains' default feature count m = ⌊D·ln D⌋ (at least 1); google's default is 256.</summary>
    public static int DefaultNumFeatures(int headDim) => Math.Max(1, (int)(headDim * Math.Log(headDim)));

    /// <summary>
    /// Gaussian orthogonal random matrix [m, D] (fp32, CPU): stacked blocks of orthonormal rows (QR of a D×D Gaussian
    /// with the sign correction that makes Q uniform, transposed; the last block truncated), each row rescaled to a chi-distributed norm (the norm of a Gaussian
    /// D-vector, <paramref name="fixedNorm"/> false: the reference's scaling 0) or to √D (scaling 1).
    /// </summary>
    public static Tensor OrthogonalRandomMatrix(int numFeatures, int headDim, bool fixedNorm = false, Generator? generator = null)
    {
        if (numFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(numFeatures), numFeatures, "The number of random features must be positive.");
        if (headDim <= 0) throw new ArgumentOutOfRangeException(nameof(headDim), headDim, "The head dimension must be positive.");
        using var scope = NewDisposeScope();
        long numBlocks = (numFeatures + headDim - 1) / headDim;
        var gaussian = torch.randn(new long[] { numBlocks, headDim, headDim }, dtype: ScalarType.Float32, generator: generator);
        var (q, r) = torch.linalg.qr(gaussian);                                                       // one batched QR
        // Householder QR fixes the signs of R's diagonal, which biases the directions (each block's first row always
        // points away from its first axis); flipping Q's columns by sign(diag R) makes Q Haar-uniform, so every row
        // is a uniform direction and E[exp(wᵀx)] = exp(‖x‖²/2) holds (lucidrains' qr_uniform_q).
        q = q * r.diagonal(0, -2, -1).sign().unsqueeze(-2);
        var matrix = q.transpose(-1, -2).reshape(numBlocks * headDim, headDim).narrow(0, 0, numFeatures);
        var norms = fixedNorm
            ? torch.full(new long[] { numFeatures, 1 }, Math.Sqrt(headDim), dtype: ScalarType.Float32)
            : torch.randn(new long[] { numFeatures, headDim }, dtype: ScalarType.Float32, generator: generator).norm(1, keepdim: true);
        return (norms * matrix).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Fast positive random features [B, H, T, m] in the dtype of <paramref name="x"/>: the projection matmul runs in
    /// that dtype, the exponent and exp in fp32. Queries subtract their own max over features; keys subtract one
    /// max per (row, head) over real tokens and features (the reference takes one max over the whole batch; per row
    /// keeps a sequence's result independent of the other rows and of padding). The maxima are constants
    /// (no gradient): they cancel in the normalized attention except through eps.
    /// </summary>
    public static Tensor Features(Tensor x, Tensor projection, bool isQuery, Tensor? keyPaddingMask, double eps = DefaultFeatureEps)
    {
        CheckProjection(x, projection);
        using var scope = NewDisposeScope();
        double normalizer = Math.Pow(x.shape[^1], -0.25);
        var xs = x * normalizer;
        var dash = xs.matmul(projection.to(x.dtype).t()).to(ScalarType.Float32);                       // [B, H, T, m]
        var diag = xs.to(ScalarType.Float32).square().sum(-1, keepdim: true) / 2;
        return Finish(dash, diag, x.dtype, projection.shape[0], isQuery, keyPaddingMask, eps).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Features"/>: wᵢᵀx' as explicit fp32 sums over D.</summary>
    public static Tensor FeaturesNaive(Tensor x, Tensor projection, bool isQuery, Tensor? keyPaddingMask, double eps = DefaultFeatureEps)
    {
        CheckProjection(x, projection);
        using var scope = NewDisposeScope();
        var xs = x.to(ScalarType.Float32) * Math.Pow(x.shape[^1], -0.25);
        var dash = (xs.unsqueeze(-2) * projection.to(ScalarType.Float32)).sum(-1);                 // [B, H, T, m]
        var diag = (xs * xs).sum(-1, keepdim: true) * 0.5;
        return Finish(dash, diag, x.dtype, projection.shape[0], isQuery, keyPaddingMask, eps).MoveToOuterDisposeScope();
    }

    /// <summary>FAVOR+ attention: <see cref="Features"/> of q and k, then <see cref="LinearAttentionKernels.Bidirectional"/>
    /// or (causal) <see cref="LinearAttentionKernels.Causal"/> with chunk <paramref name="chunk"/>. Causal: the key max
    /// spans the whole row, as in both references, so through the feature eps a position depends very weakly on later
    /// keys in the forward value (never in the gradient: the max is a constant).</summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor projection, Tensor? keyPaddingMask, bool causal = false,
        double featureEps = DefaultFeatureEps, int chunk = LinearAttentionKernels.DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var fq = Features(q, projection, isQuery: true, keyPaddingMask, featureEps);
        var fk = Features(k, projection, isQuery: false, keyPaddingMask, featureEps);
        var o = causal
            ? LinearAttentionKernels.Causal(fq, fk, v, keyPaddingMask, normalize: true, DenominatorEps, chunk)
            : LinearAttentionKernels.Bidirectional(fq, fk, v, keyPaddingMask, normalize: true, DenominatorEps);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Attention"/>: naive features and the explicit T×T kernel, fp32.</summary>
    public static Tensor AttentionNaive(Tensor q, Tensor k, Tensor v, Tensor projection, Tensor? keyPaddingMask, bool causal = false,
        double featureEps = DefaultFeatureEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var fq = FeaturesNaive(q, projection, isQuery: true, keyPaddingMask, featureEps);
        var fk = FeaturesNaive(k, projection, isQuery: false, keyPaddingMask, featureEps);
        var o = causal
            ? LinearAttentionKernels.CausalNaive(fq, fk, v, keyPaddingMask, normalize: true, DenominatorEps)
            : LinearAttentionKernels.BidirectionalNaive(fq, fk, v, keyPaddingMask, normalize: true, DenominatorEps);
        return o.MoveToOuterDisposeScope();
    }

    // ratio · (exp(dash − diag − max) + eps), all fp32; keys at padded positions get a finite dummy exponent
    // (the kernels zero them) so that padding garbage can neither win the max nor overflow.
    private static Tensor Finish(Tensor dash, Tensor diag, ScalarType dtype, long m, bool isQuery, Tensor? keyPaddingMask, double eps)
    {
        Tensor stabilizer;
        Tensor? padded = keyPaddingMask is null || isQuery ? null : keyPaddingMask.logical_not().unsqueeze(1).unsqueeze(-1);
        if (isQuery)
        {
            stabilizer = dash.amax(new long[] { -1 }, keepdim: true).detach();
        }
        else
        {
            var real = padded is null ? dash : dash.masked_fill(padded, double.NegativeInfinity);
            stabilizer = real.amax(new long[] { 2, 3 }, keepdim: true).detach();                       // [B, H, 1, 1]
            stabilizer = torch.where(stabilizer.isfinite(), stabilizer, torch.zeros_like(stabilizer)); // rows without real tokens
        }
        var exponent = dash - diag - stabilizer;
        if (padded is not null) exponent = exponent.masked_fill(padded, 0.0);
        return ((exponent.exp() + eps) / Math.Sqrt(m)).to(dtype);
    }

    private static void CheckProjection(Tensor x, Tensor projection)
    {
        if (projection.dim() != 2 || projection.shape[1] != x.shape[^1])
            throw new ArgumentException($"The random projection must be [m, D] with D = {x.shape[^1]} (the head dimension); got {Heads.Shape(projection)}.");
    }
}

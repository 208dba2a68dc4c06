using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Attention.Kernels;

/// <summary>
/// Linear attention on feature-mapped queries and keys. Inputs are already mapped: q = φ(Q), k = φ(K), non-negative
/// for the normalized form. Shapes: q/k [B, H, T, Dk], v [B, H, T, Dv], mask [B, T] bool (true = real) or null;
/// result [B, H, T, Dv], zero at padded positions.
/// <para>Normalized: o_i = Σ_j a_ij v_j / (Σ_j a_ij + eps·n) with a_ij = q_i·k_j over allowed real keys j and n the
/// number of real tokens (so the normalizer is a mean, well scaled in bf16). Unnormalized (TransNormer style):
/// o_i = Σ_j a_ij v_j / n.</para>
/// </summary>
public static partial class LinearAttentionKernels
{
    public const double DefaultEps = 1e-6;
    public const int DefaultChunk = 64;

    // ---- bidirectional ----

    /// <summary>
    /// Fast bidirectional form, O(T·Dk·Dv): one [Dk, Dv] state and one key sum per head; numerator and denominator
    /// are separate products with q (slicing one wider product costs more in the backward pass than it saves; a
    /// hand-written backward through TorchSharp's autograd.Function was slower on the GPU: its managed callbacks cost
    /// more than the passes it saves).
    /// Long sequences build the state from 1024-token partial products (more parallel work for the GPU than one long
    /// reduction), summed in fp32.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = k.shape[2];
        k = Heads.ZeroPadded(k, keyPaddingMask);
        var state = KeyValueState(k, v);                                        // [B, H, Dk, Dv] in q's dtype
        Tensor o;
        if (normalize)
        {
            var num = q.matmul(state);
            var den = q.matmul(k.sum(2).unsqueeze(-1));                        // [B, H, T, 1]
            // Σ a·v / (Σ a + eps·n): the mean form of the docs without dividing the large tensors by n.
            var epsN = keyPaddingMask is null ? null : Heads.ValidCount(keyPaddingMask, t, q.dtype, q.device) * eps;
            o = num / (epsN is null ? den + t * eps : den + epsN);
        }
        else
        {
            var n = Heads.ValidCount(keyPaddingMask, t, q.dtype, q.device);
            o = q.matmul(state) / n;
        }
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Bidirectional"/> (normalized) with the feature map applied inside: fused CUDA kernels on a GPU
    /// (<see cref="FusedLinearAttention"/>), the TorchSharp path elsewhere (same result). q, k [B, H, T, D] raw (before
    /// φ), v [B, H, T, Dv], mask [B, T] bool or null; result [B, H, T, Dv], zero at padded positions.
    /// </summary>
    /// <param name="q">Queries [B, H, T, D], before the feature map.</param>
    /// <param name="k">Keys [B, H, T, D], before the feature map.</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="featureMap">"relu", "elu" (elu+1) or "identity" (φ already applied by the caller, non-negative).</param>
    /// <param name="eps">Normalizer epsilon (per token).</param>
    public static Tensor BidirectionalFused(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, string featureMap, double eps = DefaultEps)
        => FusedLinearAttention.Bidirectional(q, k, v, keyPaddingMask, FusedLinearAttention.ParseFeatureMap(featureMap), eps);

    /// <summary>Σ_t k_tᵀ v_t per head, [B, H, Dk, Dv] in k's dtype; long T in 1024-token partial products summed in fp32.</summary>
    internal static Tensor KeyValueState(Tensor k, Tensor v, long block = 1024)
    {
        long b = k.shape[0], h = k.shape[1], t = k.shape[2], dk = k.shape[3], dv = v.shape[3];
        if (t <= 2 * block) return k.transpose(-1, -2).matmul(v);
        long m = t / block, main = m * block;
        var kc = k.narrow(2, 0, main).view(b, h, m, block, dk);
        var vc = v.narrow(2, 0, main).view(b, h, m, block, dv);
        var state = kc.transpose(-1, -2).matmul(vc).sum(2, type: ScalarType.Float32);
        if (main < t)
            state = state + k.narrow(2, main, t - main).transpose(-1, -2).matmul(v.narrow(2, main, t - main)).to(ScalarType.Float32);
        return state.to(k.dtype);
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: the explicit T×T weight matrix, fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        return Naive(q, k, v, keyPaddingMask, causal: false, normalize, eps);
    }

    // ---- causal ----

    /// <summary>
    /// Causal chunkwise form (chunk <paramref name="chunk"/>, any T): inter-chunk states accumulated in fp32 with an
    /// exclusive cumulative sum, intra-chunk masked quadratic part. Normalized like <see cref="Bidirectional"/>
    /// except that n is the position count t+1; the normalized form runs as <see cref="CausalFoldedNormalizer"/>.
    /// </summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps, int chunk = DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive.");
        // The folded form is faster fwd+bwd on the GPU at every length `bench kernels` times; this one stays for the unnormalized case.
        if (normalize) return CausalFoldedNormalizer(q, k, v, keyPaddingMask, eps, chunk);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dv = v.shape[3];
        var (qc, kc, vc, tp) = Chunks(q, Heads.ZeroPadded(k, keyPaddingMask), v, chunk);
        var inter = InterChunk(qc, kc, vc);                                            // [B, H, NC, C, Dv]
        var causalMask = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device).tril();
        var scores = qc.matmul(kc.transpose(-1, -2)).masked_fill(causalMask.logical_not(), 0.0);
        var num = (inter + scores.matmul(vc)).view(b, h, tp, dv).narrow(2, 0, t);
        var pos = torch.arange(1, t + 1, dtype: dtype, device: q.device).view(1, 1, t, 1);
        var o = num / pos;
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>q, k, v [B, H, T, ·] zero-padded to a whole number of chunks and viewed as [B, H, NC, C, ·]; also the padded length.</summary>
    private static (Tensor qc, Tensor kc, Tensor vc, long padded) Chunks(Tensor q, Tensor k, Tensor v, int chunk)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2];
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk;
        Tensor Split(Tensor x) => (tp == t ? x : nn.functional.pad(x, new long[] { 0, 0, 0, tp - t })).view(b, h, nc, chunk, x.shape[3]);
        return (Split(q), Split(k), Split(v), tp);
    }

    /// <summary>Each chunk's queries times the state of all earlier chunks (exclusive prefix sum of kᵀv, accumulated in fp32), in q's dtype.</summary>
    private static Tensor InterChunk(Tensor qc, Tensor kc, Tensor vc)
        => qc.matmul(ExclusivePrefixSum(kc.transpose(-1, -2).matmul(vc).to(ScalarType.Float32), 2).to(qc.dtype));

    /// <summary>
    /// Exclusive prefix sum along <paramref name="dim"/> built by shifting (zeros, then the cumsum of all but the
    /// last slice). Not cumsum(x) − x: that subtraction cancels in the backward pass only up to rounding and leaks
    /// large upstream gradients of near-empty early rows into every later slice.
    /// </summary>
    public static Tensor ExclusivePrefixSum(Tensor x, long dim)
    {
        long n = x.shape[dim];
        var first = torch.zeros_like(x.narrow(dim, 0, 1));
        return n == 1 ? first : torch.cat(new[] { first, x.narrow(dim, 0, n - 1).cumsum(dim) }, dim);
    }

    /// <summary>Naive twin of <see cref="Causal"/>: explicit lower-triangular T×T weights, fp32.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        return Naive(q, k, v, keyPaddingMask, causal: true, normalize, eps);
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/> (S_t = S_{t−1} + k_t v_tᵀ), fp32; slow, for tests.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        var qf = q.to(ScalarType.Float32);
        var kf = Heads.ZeroPadded(k, keyPaddingMask).to(ScalarType.Float32);
        var vf = v.to(ScalarType.Float32);
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var s = torch.zeros(b, h, dk, dv, device: q.device);
        var z = torch.zeros(b, h, dk, 1, device: q.device);
        var outs = new List<Tensor>();
        for (long i = 0; i < t; i++)
        {
            var ki = kf.select(2, i).unsqueeze(-1);     // [B, H, Dk, 1]
            s = s + ki.matmul(vf.select(2, i).unsqueeze(-2));
            z = z + ki;
            var qi = qf.select(2, i).unsqueeze(-2);     // [B, H, 1, Dk]
            var num = qi.matmul(s) / (i + 1);
            outs.Add(normalize ? num / (qi.matmul(z) / (i + 1) + eps) : num);
        }
        var o = torch.cat(outs.ToArray(), 2).to(dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static Tensor Naive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool causal, bool normalize, double eps)
    {
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = k.shape[2];
        var a = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2));   // [B, H, T, T]
        if (keyPaddingMask is not null) a = a * keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        Tensor n;
        if (causal)
        {
            a = a.tril();
            n = torch.arange(1, t + 1, dtype: ScalarType.Float32, device: q.device).view(1, 1, t, 1);
        }
        else
        {
            n = Heads.ValidCount(keyPaddingMask, t, ScalarType.Float32, q.device);
        }
        var num = a.matmul(v.to(ScalarType.Float32)) / n;
        var o = normalize ? num / (a.sum(-1, keepdim: true) / n + eps) : num;
        return Heads.ZeroPadded(o.to(dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.LinearKernel;

/// <summary>
/// Linear attention on feature-mapped queries and keys. Inputs are already mapped: q = φ(Q), k = φ(K), non-negative
/// for the normalized form. Shapes: q/k [B, H, T, Dk], v [B, H, T, Dv], mask [B, T] bool (true = real) or null;
/// result [B, H, T, Dv], zero at padded positions.
/// <para>Normalized: o_i = Σ_j a_ij v_j / (Σ_j a_ij + eps·n) with a_ij = q_i·k_j over allowed real keys j and n the
/// number of real tokens (so the normalizer is a mean, well scaled in bf16). Unnormalized (TransNormer style):
/// o_i = Σ_j a_ij v_j / n.</para>
/// </summary>
public static class LinearAttentionKernels
{
    public const double DefaultEps = 1e-6;
    public const int DefaultChunk = 64;

    // ---- bidirectional ----

    /// <summary>Fast bidirectional form, O(T·Dk·Dv): one [Dk, Dv+1] state per head (the normalizer rides along as a
    /// column of ones appended to v, so numerator and denominator come from the same two matmuls).</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long t = k.shape[2];
        var n = Heads.ValidCount(keyPaddingMask, t, q.dtype, q.device);
        k = Heads.ZeroPadded(k, keyPaddingMask);
        Tensor o;
        if (normalize)
        {
            var v1 = torch.cat(new[] { v, torch.ones_like(v.narrow(-1, 0, 1)) }, -1);
            var state = k.transpose(-1, -2).matmul(v1 / n);                  // [B, H, Dk, Dv+1]
            var out1 = q.matmul(state);                                        // [B, H, T, Dv+1]
            long dv = v.shape[3];
            o = out1.narrow(-1, 0, dv) / (out1.narrow(-1, dv, 1) + eps);
        }
        else
        {
            o = q.matmul(k.transpose(-1, -2).matmul(v / n));
        }
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
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
    /// except that n is the position count t+1.
    /// </summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool normalize = true, double eps = DefaultEps, int chunk = DefaultChunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive.");
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        k = Heads.ZeroPadded(k, keyPaddingMask);
        if (normalize) v = torch.cat(new[] { v, torch.ones_like(v.narrow(-1, 0, 1)) }, -1);
        long dvx = v.shape[3];
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk;
        if (tp != t)
        {
            q = nn.functional.pad(q, new long[] { 0, 0, 0, tp - t });
            k = nn.functional.pad(k, new long[] { 0, 0, 0, tp - t });
            v = nn.functional.pad(v, new long[] { 0, 0, 0, tp - t });
        }
        var qc = q.view(b, h, nc, chunk, dk);
        var kc = k.view(b, h, nc, chunk, dk);
        var vc = v.view(b, h, nc, chunk, dvx);
        // Per-chunk states, then the state before each chunk (exclusive prefix sum), in fp32.
        var chunkStates = kc.transpose(-1, -2).matmul(vc).to(ScalarType.Float32);       // [B, H, NC, Dk, Dvx]
        // Shift, not cumsum(S) − S: the subtraction cancels in the backward pass only up to rounding, which leaks
        // large upstream gradients of near-empty early rows into every chunk.
        var before = nc == 1
            ? torch.zeros_like(chunkStates)
            : torch.cat(new[] { torch.zeros_like(chunkStates.narrow(2, 0, 1)), chunkStates.narrow(2, 0, nc - 1).cumsum(2) }, 2);
        var inter = qc.matmul(before.to(dtype));                                       // [B, H, NC, C, Dvx]
        var causalMask = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: q.device).tril();
        var scores = qc.matmul(kc.transpose(-1, -2)).masked_fill(causalMask.logical_not(), 0.0);
        var outAll = (inter + scores.matmul(vc)).view(b, h, tp, dvx).narrow(2, 0, t);
        Tensor o;
        if (normalize)
        {
            var pos = torch.arange(1, t + 1, dtype: dtype, device: q.device).view(1, 1, t, 1);
            o = (outAll.narrow(-1, 0, dv) / pos) / (outAll.narrow(-1, dv, 1) / pos + eps);
        }
        else
        {
            o = outAll / torch.arange(1, t + 1, dtype: dtype, device: q.device).view(1, 1, t, 1);
        }
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
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

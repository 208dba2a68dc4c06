using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Softmax;

/// <summary>
/// Softmax attention. Shapes: q [B, Hq, T, D], k/v [B, H, T, D] (Hq a multiple of H: grouped heads), mask [B, T] bool
/// (true = real token) or null; result [B, Hq, T, D], zero at padded query positions.
/// </summary>
public static class SoftmaxKernels
{
    /// <summary>Fast form: <c>scaled_dot_product_attention</c> (flash/memory-efficient kernels on GPU); on the CPU, short
    /// sequences take explicit scores (<see cref="UsesExplicitScores"/>).</summary>
    /// <param name="q">Queries [B, Hq, T, D].</param>
    /// <param name="k">Keys [B, H, T, D] (Hq a multiple of H).</param>
    /// <param name="v">Values [B, H, T, D].</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="causal">Whether query i sees only keys j ≤ i.</param>
    /// <param name="window">Sliding window: 0 = full attention. Bidirectional: keys with |i−j| ≤ window.
    /// Causal: keys with 0 ≤ i−j &lt; window.</param>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool causal = false, int window = 0)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        (k, v) = RepeatKv(q, k, v);
        var allowed = AllowedMask(keyPaddingMask, q.shape[2], causal, window, q.device);
        Tensor o;
        if (UsesExplicitScores(q))
            o = ExplicitScores(q, k, v, allowed ?? (causal ? CausalMask(q.shape[2], q.device) : null));
        else if (allowed is null)
            o = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: causal);
        else
            o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: allowed);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Longest sequence for which the CPU computes explicit scores rather than SDPA's flash kernel (fp32).</summary>
    internal const int CpuExplicitScoresMaxLength = 64;

    /// <summary>Longest such sequence in bf16 / fp16, whose flash-kernel backward is several times slower on the CPU.</summary>
    internal const int CpuExplicitScoresMaxLengthLowPrecision = 128;

    /// <summary>
    /// Whether <see cref="Attention"/> takes the explicit-scores form: on the CPU for short sequences, where SDPA's
    /// flash kernel costs more than the small T × T matrices it avoids (about twice as much forward and backward at
    /// T = 32 in fp32, and ten times as much backward in bf16). GPUs always use SDPA; so does the CPU when
    /// <see cref="Runtime.CpuFastPaths.ExplicitScoresForShortSequences"/> is off.
    /// </summary>
    internal static bool UsesExplicitScores(Tensor q)
    {
        if (q.device_type != DeviceType.CPU || !Runtime.CpuFastPaths.ExplicitScoresForShortSequences) return false;
        long limit = q.dtype == ScalarType.Float32 ? CpuExplicitScoresMaxLength : CpuExplicitScoresMaxLengthLowPrecision;
        return q.shape[2] <= limit;
    }

    /// <summary>Scores q·kᵀ/√D, masked to <paramref name="allowed"/> (broadcast over heads and, for a key-padding mask,
    /// over queries), softmax, then the weighted sum of values, all in fp32 as the flash kernel accumulates (bf16
    /// scores would move the probabilities by a few percent); the result in the input's precision.</summary>
    private static Tensor ExplicitScores(Tensor q, Tensor k, Tensor v, Tensor? allowed)
    {
        var dtype = q.dtype;
        if (dtype != ScalarType.Float32) (q, k, v) = (q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32));
        var scores = (q * (1.0 / Math.Sqrt(q.shape[3]))).matmul(k.transpose(-1, -2));
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return scores.softmax(-1).matmul(v).to(dtype);
    }

    private static Tensor CausalMask(long t, Device device) =>
        torch.ones(t, t, dtype: ScalarType.Bool, device: device).tril().view(1, 1, t, t);

    /// <summary>Naive twin: explicit scores, mask and softmax in fp32.</summary>
    public static Tensor AttentionNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, bool causal = false, int window = 0)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        (k, v) = RepeatKv(q, k, v);
        var qf = q.to(ScalarType.Float32);
        var scores = qf.matmul(k.to(ScalarType.Float32).transpose(-1, -2)) / Math.Sqrt(q.shape[3]);
        var allowed = AllowedMask(keyPaddingMask, q.shape[2], causal, window, q.device)?.expand(-1, -1, q.shape[2], -1)
                      ?? (causal ? torch.ones(q.shape[2], q.shape[2], dtype: ScalarType.Bool, device: q.device).tril().view(1, 1, q.shape[2], q.shape[2]) : null);
        if (allowed is not null) scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        var o = scores.softmax(-1).matmul(v.to(ScalarType.Float32)).to(dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Boolean mask of allowed (query, key) pairs, or null for plain full/causal attention. Full bidirectional attention
    /// with padding gets a key-padding mask [B, 1, 1, T] that SDPA broadcasts over queries (O(B·T) memory, no T × T
    /// tensor; the memory-efficient kernel takes it on CUDA, the flash kernel takes it on the CPU); a row with no real
    /// token sees every key so that no softmax is empty (its output is zeroed afterwards). Causal or windowed attention
    /// with padding gets [B, 1, T, T], where a padded query may always see itself for the same reason.
    /// </summary>
    internal static Tensor? AllowedMask(Tensor? keyPaddingMask, long t, bool causal, int window, Device device)
    {
        if (keyPaddingMask is null && window <= 0) return null;   // plain full or causal: SDPA's is_causal, no mask
        if (keyPaddingMask is not null && !causal && window <= 0)
            return (keyPaddingMask | keyPaddingMask.any(-1, keepdim: true).logical_not()).view(-1, 1, 1, t);
        var i = torch.arange(t, device: device).view(t, 1);
        var j = torch.arange(t, device: device).view(1, t);
        var allowed = torch.ones(t, t, dtype: ScalarType.Bool, device: device);
        if (causal) allowed = allowed & (j <= i);
        if (window > 0) allowed = allowed & (causal ? (i - j) < window : (i - j).abs() <= window);
        var m = allowed.view(1, 1, t, t);
        if (keyPaddingMask is not null)
        {
            var diagonal = torch.eye(t, dtype: ScalarType.Bool, device: device).view(1, 1, t, t);
            m = (m & keyPaddingMask.view(-1, 1, 1, t)) | diagonal;
        }
        return m;
    }

    private static (Tensor k, Tensor v) RepeatKv(Tensor q, Tensor k, Tensor v)
    {
        long hq = q.shape[1], hk = k.shape[1];
        if (hq == hk) return (k, v);
        if (hq % hk != 0) throw new ArgumentException($"Query heads ({hq}) must be a multiple of key/value heads ({hk}).");
        long r = hq / hk;
        return (k.repeat_interleave(r, dim: 1), v.repeat_interleave(r, dim: 1));
    }
}

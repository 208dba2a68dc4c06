using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SlidingWindow;

/// <summary>
/// Blocked views of a sequence for banded attention without a [T, T] tensor: queries are cut into blocks of Q, and
/// each block sees a contiguous key span of L = <c>before</c> + Q + <c>after</c> positions (the block plus
/// <c>before</c> keys to its left and <c>after</c> to its right). Memory is O(T·L), not O(T²).
/// </summary>
internal static class BandedBlocks
{
    /// <summary>Number of blocks of <paramref name="block"/> covering <paramref name="t"/> positions.</summary>
    internal static long Count(long t, long block) => (t + block - 1) / block;

    /// <summary>[B, H, T, D] → [B, H, NC, Q, D], zero-padded at the end to NC·Q.</summary>
    internal static Tensor Blocks(Tensor x, long block)
    {
        long b = x.shape[0], h = x.shape[1], t = x.shape[2], d = x.shape[3];
        long nc = Count(t, block);
        if (nc * block != t) x = nn.functional.pad(x, new long[] { 0, 0, 0, nc * block - t });
        return x.reshape(b, h, nc, block, d);
    }

    /// <summary>[B, H, NC, Q, D] → [B, H, T, D] (drops the end padding).</summary>
    internal static Tensor Unblock(Tensor x, long t)
    {
        long b = x.shape[0], h = x.shape[1], nc = x.shape[2], q = x.shape[3], d = x.shape[4];
        return x.reshape(b, h, nc * q, d).narrow(2, 0, t);
    }

    /// <summary>
    /// Key spans [B, H, NC, L, D] of x [B, H, T, D]: span c covers positions c·Q − before … c·Q + Q − 1 + after,
    /// zeros outside 0 … T−1.
    /// </summary>
    internal static Tensor Spans(Tensor x, long block, long before, long after)
    {
        long t = x.shape[2];
        long nc = Count(t, block);
        long span = before + block + after;
        var padded = nn.functional.pad(x, new long[] { 0, 0, before, after + nc * block - t });
        return padded.unfold(2, span, block).transpose(-1, -2);   // unfold puts the window last: [B, H, NC, D, L]
    }

    /// <summary>
    /// Which span entries are real keys: [B or 1, 1, NC, 1, L] bool, false outside 0 … T−1 and at padded keys.
    /// </summary>
    internal static Tensor SpanKeyValid(Tensor? keyPaddingMask, long t, long block, long before, long after, Device device)
    {
        long nc = Count(t, block);
        long span = before + block + after;
        var real = keyPaddingMask is null
            ? torch.ones(1, t, dtype: ScalarType.Float32, device: device)
            : keyPaddingMask.to(ScalarType.Float32);
        var padded = nn.functional.pad(real, new long[] { before, after + nc * block - t });
        return padded.unfold(1, span, block).gt(0.5).unsqueeze(1).unsqueeze(3);
    }

    /// <summary>
    /// i − j for query row a of a block and key column b of its span: [Q, L] int64 (a − b + before).
    /// </summary>
    internal static Tensor Offsets(long block, long before, long after, Device device)
    {
        long span = before + block + after;
        var a = torch.arange(block, device: device).view(block, 1);
        var b = torch.arange(span, device: device).view(1, span);
        return a - b + before;
    }

    /// <summary>
    /// The library's sliding-window band on offsets d = i − j (same as <c>SoftmaxKernels</c>):
    /// bidirectional |d| ≤ window; causal 0 ≤ d &lt; window.
    /// </summary>
    internal static Tensor Band(Tensor offsets, int window, bool causal)
        => causal ? offsets.ge(0) & offsets.lt(window) : offsets.abs().le(window);

    /// <summary>Span padding of the band: (before, after) keys around a query block.</summary>
    internal static (long Before, long After) BandReach(int window, bool causal)
        => causal ? (window - 1, 0) : (window, window);

    /// <summary>Checks a window size and names the fix.</summary>
    internal static void CheckWindow(int window, string what)
    {
        if (window <= 0)
            throw new ArgumentOutOfRangeException(nameof(window), window,
                $"{what}: the window must be positive (bidirectional: keys with |i−j| ≤ window; causal: the last window keys).");
    }

    /// <summary>Repeats key/value heads for grouped queries (Hq a multiple of H).</summary>
    internal static (Tensor K, Tensor V) RepeatKv(Tensor q, Tensor k, Tensor v)
    {
        long hq = q.shape[1], hk = k.shape[1];
        if (hq == hk) return (k, v);
        if (hq % hk != 0) throw new ArgumentException($"Query heads ({hq}) must be a multiple of key/value heads ({hk}).");
        return (k.repeat_interleave(hq / hk, dim: 1), v.repeat_interleave(hq / hk, dim: 1));
    }
}

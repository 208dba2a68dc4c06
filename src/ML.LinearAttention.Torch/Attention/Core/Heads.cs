using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>Head split/merge and padding-mask helpers shared by the kernels. Convention: [B, H, T, D].</summary>
public static class Heads
{
    /// <summary>[B, T, H·D] → [B, H, T, D].</summary>
    public static Tensor Split(Tensor x, int numHeads)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        return x.view(b, t, numHeads, c / numHeads).transpose(1, 2);
    }

    /// <summary>[B, H, T, D] → [B, T, H·D].</summary>
    public static Tensor Merge(Tensor x)
    {
        long b = x.shape[0], h = x.shape[1], t = x.shape[2], d = x.shape[3];
        return x.transpose(1, 2).reshape(b, t, h * d);
    }

    /// <summary>Key-padding mask [B, T] (bool, true = real) → [B, 1, T, 1] in <paramref name="dtype"/>; null stays null.</summary>
    public static Tensor? TokenMask(Tensor? keyPaddingMask, ScalarType dtype)
        => keyPaddingMask is null ? null : keyPaddingMask.to(dtype).unsqueeze(1).unsqueeze(-1);

    /// <summary>Zeroes positions of [B, H, T, D] (or [B, T, C]) where the mask is false.</summary>
    public static Tensor ZeroPadded(Tensor x, Tensor? keyPaddingMask)
    {
        if (keyPaddingMask is null) return x;
        var m = x.dim() == 4 ? keyPaddingMask.unsqueeze(1).unsqueeze(-1) : keyPaddingMask.unsqueeze(-1);
        return x * m.to(x.dtype);
    }

    /// <summary>Number of real tokens per row as [B, 1, 1, 1] (T when no mask), at least 1.</summary>
    public static Tensor ValidCount(Tensor? keyPaddingMask, long t, ScalarType dtype, Device device)
        => keyPaddingMask is null
            ? torch.full(new long[] { 1, 1, 1, 1 }, (double)t, dtype: dtype, device: device)
            : keyPaddingMask.sum(1, type: dtype).clamp_min(1).view(-1, 1, 1, 1);

    /// <summary>Checks q/k/v shapes and the mask shape; throws with the actual shapes.</summary>
    public static void CheckQkv(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
            throw new ArgumentException($"q, k and v must be [B, H, T, D]; got q {Shape(q)}, k {Shape(k)}, v {Shape(v)}.");
        if (k.shape[0] != q.shape[0] || v.shape[0] != q.shape[0] || k.shape[2] != v.shape[2] || k.shape[1] != v.shape[1])
            throw new ArgumentException($"q, k and v disagree on batch, heads or length: q {Shape(q)}, k {Shape(k)}, v {Shape(v)}.");
        if (keyPaddingMask is not null && (keyPaddingMask.dim() != 2 || keyPaddingMask.shape[0] != k.shape[0] || keyPaddingMask.shape[1] != k.shape[2]))
            throw new ArgumentException($"keyPaddingMask must be [B, T] = [{k.shape[0]}, {k.shape[2]}]; got {Shape(keyPaddingMask)}.");
        if (keyPaddingMask is not null && keyPaddingMask.dtype != ScalarType.Bool)
            throw new ArgumentException($"keyPaddingMask must be bool (true = real token); got {keyPaddingMask.dtype}.");
    }

    internal static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}

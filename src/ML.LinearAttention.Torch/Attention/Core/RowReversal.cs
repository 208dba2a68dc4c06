using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// Reverses each row within its true length (right padding): position t &lt; L_b maps to L_b − 1 − t, padded positions
/// stay in place, so a causal scan of the result starts at the row's last real token (the backward scans of the
/// bidirectional decay and delta-rule forms). The map is its own inverse: apply it again to bring results back.
/// </summary>
public static class RowReversal
{
    /// <summary>
    /// Gather indices [B, T] int64: idx[b, t] = L_b − 1 − t for t &lt; L_b, t otherwise; null without a mask (then
    /// <see cref="Apply"/> is a plain flip).
    /// </summary>
    public static Tensor? Indices(Tensor? keyPaddingMask, long t, Device device)
    {
        if (keyPaddingMask is null) return null;
        using var scope = NewDisposeScope();
        var len = keyPaddingMask.sum(1, type: ScalarType.Int64).unsqueeze(1);              // [B, 1]
        var pos = torch.arange(t, dtype: ScalarType.Int64, device: device).unsqueeze(0);   // [1, T]
        return torch.where(pos < len, len - 1 - pos, pos).MoveToOuterDisposeScope();
    }

    /// <summary>Reverses dim 2 of x [B, H, T] or [B, H, T, D] with <see cref="Indices"/> (plain flip when null).</summary>
    public static Tensor Apply(Tensor x, Tensor? indices)
    {
        if (indices is null) return x.flip(2);
        long b = indices.shape[0], t = indices.shape[1];
        var shape = x.dim() == 3 ? new long[] { b, 1, t } : new long[] { b, 1, t, 1 };
        return x.gather(2, indices.view(shape).expand(x.shape));
    }
}

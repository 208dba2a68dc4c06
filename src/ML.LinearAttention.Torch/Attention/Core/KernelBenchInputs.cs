using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// Input factories of the kernel benchmark cases (<c>*Bench.cs</c>): fresh leaf tensors in the case's dtype and device
/// that require grad, so the benchmark times forward and backward. Combine them with collection expressions, e.g.
/// <c>Tensor[] Make() => [.. s.Qkv(), s.Gates()];</c> (elements are created left to right).
/// </summary>
internal static class KernelBenchInputs
{
    /// <summary>A leaf N(0, 1) tensor of <paramref name="shape"/>.</summary>
    internal static Tensor Randn(this KernelBenchShape s, params long[] shape)
        => torch.randn(shape, dtype: s.DType, device: s.Device).requires_grad_(true);

    /// <summary><paramref name="count"/> leaf N(0, 1) tensors [B, H, T, D]: q, k, v (and more of that shape).</summary>
    internal static Tensor[] Qkv(this KernelBenchShape s, int count = 3)
        => Enumerable.Range(0, count).Select(_ => s.Randn(s.B, s.H, s.T, s.D)).ToArray();

    /// <summary>Leaf per-head scalar logits [B, H, T] (gates, β), N(<paramref name="mean"/>, 1).</summary>
    internal static Tensor Gates(this KernelBenchShape s, double mean = 0)
        => mean == 0 ? s.Randn(s.B, s.H, s.T)
            : (torch.randn(s.B, s.H, s.T, dtype: s.DType, device: s.Device) + mean).requires_grad_(true);

    /// <summary>Leaf per-channel logits [B, H, T, D] (per-channel gates).</summary>
    internal static Tensor ChannelGates(this KernelBenchShape s) => s.Randn(s.B, s.H, s.T, s.D);

    /// <summary>A leaf stack of H identity matrices [H, D, D] (Hedgehog feature-map weights at initialisation).</summary>
    internal static Tensor Identities(this KernelBenchShape s)
        => torch.eye(s.D, dtype: s.DType, device: s.Device).unsqueeze(0).repeat(s.H, 1, 1).requires_grad_(true);
}

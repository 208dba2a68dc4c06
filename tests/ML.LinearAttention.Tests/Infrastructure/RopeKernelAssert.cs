using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>A bidirectional kernel with optional RoPE tables: (q, k, v, keyPaddingMask, cos, sin) → [B, H, T, Dv].</summary>
public delegate Tensor RopeKernel(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, Tensor? cos, Tensor? sin);

/// <summary>The fast-vs-naive check shared by the RoPE-capable vision kernels (MALA, NaLaFormer, RALA).</summary>
public static class RopeKernelAssert
{
    /// <summary>
    /// Seeds, draws q, k [B, 2, T, 8] and v [B, 2, T, 6] for the given lengths, and compares outputs and gradients of
    /// <paramref name="fast"/> and <paramref name="naive"/> at real positions, with sequence RoPE tables when
    /// <paramref name="rope"/> is set (none otherwise).
    /// </summary>
    public static void SameOutputsAndGradients(long[] lengths, bool rope, ScalarType dtype, RopeKernel fast, RopeKernel naive, string what)
    {
        Torch.Seed();
        long t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var (q, k, v) = KernelAssert.Qkv(lengths, dtype);
        var (cos, sin) = Rope.Tables(t, 8, null, torch.CPU);
        Tensor? c = rope ? cos : null, s = rope ? sin : null;
        KernelAssert.SameOutputsAndGradients(
            i => fast(i[0], i[1], i[2], mask, c, s),
            i => naive(i[0], i[1], i[2], mask, c, s),
            new[] { q, k, v }, dtype, $"{what} rope={rope}", KernelAssert.HeadMask(mask));
    }
}

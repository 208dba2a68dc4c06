using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;

namespace Microsoft.ML.LinearAttention.Attention.Hedgehog;

/// <summary>Kernel benchmark cases of Hedgehog (feature maps with F = D, so φ has 2D dims).</summary>
internal static class HedgehogBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => [.. s.Qkv(), s.Identities(), s.Identities()];
        yield return new KernelBenchCase("bidirectional", false, Make,
            i => LinearAttentionKernels.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null));
        // Hedgehog-style: the caller applies φ (2D dims), the fused kernels take it as precomputed (identity map).
        // "fused": CUDA-core kernels; "fused mma": tensor-core kernels where they apply (bf16/fp16, head dims multiples of 16).
        // φ runs as the map's own kernels (FusedHedgehogMap, on by default) unless the case says "libtorch map".
        foreach (bool mma in new[] { false, true })
            yield return new KernelBenchCase($"bidirectional fused{(mma ? " mma" : "")} (identity map)", false, Make,
                i => FusedLinearAttention.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null,
                    FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: mma));
        // The switch is set for the forward call; the backward follows the autograd node it recorded.
        yield return new KernelBenchCase("bidirectional fused mma, libtorch map", false, Make, i => WithMapKernels(false, () =>
            FusedLinearAttention.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null,
                FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: true)));
        // Where the fused case's time goes: the two feature maps alone (map kernels, then libtorch ops), the map's two
        // parts for q alone, and the tensor-core kernels alone on features of Hedgehog's width (2D, non-negative, as the
        // map would give them).
        yield return new KernelBenchCase("feature maps only (q and k)", false, Make,
            i => WithMapKernels(true, () => HedgehogFeatureMap.Map(i[0], i[3]) + HedgehogFeatureMap.Map(i[1], i[4])));
        yield return new KernelBenchCase("feature maps only (q and k), libtorch map", false, Make,
            i => WithMapKernels(false, () => HedgehogFeatureMap.Map(i[0], i[3]) + HedgehogFeatureMap.Map(i[1], i[4])));
        yield return new KernelBenchCase("map of q: projection only", false, Make, i => i[0].matmul(i[3].to(i[0].dtype).unsqueeze(0)));
        yield return new KernelBenchCase("map of q: map kernels only", false, Make, i => WithMapKernels(true, () => FusedHedgehogMap.Apply(i[0])));
        yield return new KernelBenchCase("fused mma on 2D-wide features (no map)", false,
            () => [s.Randn(s.B, s.H, s.T, 2 * s.D).abs().detach().requires_grad_(true), s.Randn(s.B, s.H, s.T, 2 * s.D).abs().detach().requires_grad_(true), s.Randn(s.B, s.H, s.T, s.D)],
            i => FusedLinearAttention.Bidirectional(i[0], i[1], i[2], null, FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: true));
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => LinearAttentionKernels.Causal(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null));
    }

    private static Tensor WithMapKernels(bool on, Func<Tensor> run)
    {
        bool before = FusedHedgehogMap.Enabled;
        FusedHedgehogMap.Enabled = on;
        try { return run(); }
        finally { FusedHedgehogMap.Enabled = before; }
    }
}

using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

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
        // φ runs as one kernel each way with its projection (FusedHedgehogProjection, on by default) unless the case says
        // "projection apart" (libtorch matmul, then the map's own kernels) or "libtorch map" (matmul and libtorch softmax).
        foreach (bool mma in new[] { false, true })
            yield return new KernelBenchCase($"bidirectional fused{(mma ? " mma" : "")} (identity map)", false, Make,
                i => FusedLinearAttention.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null,
                    FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: mma));
        // φ computed inside the tensor-core attention kernels from x (FusedHedgehogAttention; what HedgehogMixer routes
        // bidirectional bf16 calls to), never stored; then the same kernels compiled for one block per SM (the default
        // from 2K tokens per sequence on; below, two, which caps mma_bwd_q at 128 registers at D = 64).
        yield return new KernelBenchCase("bidirectional fused mma, φ inside the attention kernels", false, Make,
            i => FusedHedgehogAttention.Bidirectional(i[0], i[1], i[2], i[3], i[4], null));
        yield return new KernelBenchCase("bidirectional fused mma, φ inside the attention kernels, 1 block/SM", false, Make, i =>
        {
            FusedHedgehogAttention.CompiledBlocksPerSm = 1;
            try { return FusedHedgehogAttention.Bidirectional(i[0], i[1], i[2], i[3], i[4], null); }
            finally { FusedHedgehogAttention.CompiledBlocksPerSm = null; }
        });
        // The switches are set for the forward call; the backward follows the autograd nodes it recorded.
        foreach (var (label, projection, map) in new[] { (", projection apart", false, true), (", libtorch map", false, false) })
            yield return new KernelBenchCase("bidirectional fused mma" + label, false, Make, i => WithKernels(projection, map, () =>
                FusedLinearAttention.Bidirectional(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null,
                    FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: true)));
        // Where the fused case's time goes: the two feature maps alone (projection kernels, projection apart, libtorch),
        // the parts for q alone, and the tensor-core kernels alone on features of Hedgehog's width (2D, non-negative, as
        // the map would give them).
        foreach (var (label, projection, map) in new[] { ("", true, true), (", projection apart", false, true), (", libtorch map", false, false) })
            yield return new KernelBenchCase("feature maps only (q and k)" + label, false, Make,
                i => WithKernels(projection, map, () => HedgehogFeatureMap.Map(i[0], i[3]) + HedgehogFeatureMap.Map(i[1], i[4])));
        yield return new KernelBenchCase("map of q: projection only", false, Make, i => i[0].matmul(i[3].to(i[0].dtype).unsqueeze(0)));
        yield return new KernelBenchCase("map of q: map kernels only", false, Make, i => WithKernels(false, true, () => FusedHedgehogMap.Apply(i[0])));
        yield return new KernelBenchCase("map of q: projection kernels", false, Make, i => WithKernels(true, true, () => HedgehogFeatureMap.Map(i[0], i[3])));
        yield return new KernelBenchCase("fused mma on 2D-wide features (no map)", false,
            () => [s.Randn(s.B, s.H, s.T, 2 * s.D).abs().detach().requires_grad_(true), s.Randn(s.B, s.H, s.T, 2 * s.D).abs().detach().requires_grad_(true), s.Randn(s.B, s.H, s.T, s.D)],
            i => FusedLinearAttention.Bidirectional(i[0], i[1], i[2], null, FusedFeatureMap.Identity, LinearAttentionKernels.DefaultEps, tensorCores: true));
        // Causal: the fused tensor-core causal kernels on φ (what HedgehogMixer routes causal bf16 calls to).
        yield return new KernelBenchCase("causal fused mma (identity map)", true, Make,
            i => FusedLinearAttention.Causal(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null, FusedFeatureMap.Identity));
        yield return new KernelBenchCase("causal chunk64", true, Make,
            i => LinearAttentionKernels.Causal(HedgehogFeatureMap.Map(i[0], i[3]), HedgehogFeatureMap.Map(i[1], i[4]), i[2], null));
    }

    private static Tensor WithKernels(bool projection, bool map, Func<Tensor> run)
    {
        var before = FusedKernelOptions.Current;
        FusedKernelOptions.Current = before with { HedgehogProjectionEnabled = projection, HedgehogMapEnabled = map };
        try { return run(); }
        finally { FusedKernelOptions.Current = before; }
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Linear attention on [softmax(xW), softmax(−xW)]: F = 2·FeatureDim (D by default); the maps' weights are parameters.</summary>
    internal static double Flops(FlopShape s, HedgehogOptions o)
        => FlopShape.LinearKernel(2.0 * (o.FeatureDim > 0 ? o.FeatureDim : s.HeadDim), s.HeadDim) * s.Heads;
}

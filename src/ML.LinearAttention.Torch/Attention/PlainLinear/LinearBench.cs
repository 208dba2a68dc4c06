using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Attention.PlainLinear;

/// <summary>
/// Kernel benchmark cases of plain linear attention (feature maps applied inside the timed call): relu and elu+1,
/// their fused CUDA kernels (FusedLinearAttention), and fla's other maps: t2r and elementwise_product (learned D×D weights shared by heads), dpfp (ν = 4, 8·D features).
/// </summary>
internal static class LinearBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        Tensor W() => (torch.randn(s.D, s.D, dtype: s.DType, device: s.Device) / Math.Sqrt(s.D)).requires_grad_(true);
        Tensor B() => torch.zeros(s.D, dtype: s.DType, device: s.Device).requires_grad_(true);
        Tensor[] MakeLearned() => Make().Concat(new[] { W(), W(), B(), W(), B() }).ToArray();
        foreach (var map in new[] { "relu", "elu" })
            yield return new KernelBenchCase($"{map} bidirectional", false, Make,
                i => LinearAttentionKernels.Bidirectional(FeatureMaps.Apply(map, i[0]), FeatureMaps.Apply(map, i[1]), i[2], null));
        // The same maps as fused CUDA kernels (the TorchSharp path above on the CPU or without NVRTC).
        // "fused": CUDA-core kernels; "fused mma": tensor-core kernels (bf16/fp16, head dims multiples of 16, else the same CUDA-core ones).
        foreach (var map in new[] { "relu", "elu" })
        foreach (bool mma in new[] { false, true })
            yield return new KernelBenchCase($"{map} bidirectional fused{(mma ? " mma" : "")}", false, Make,
                i => FusedLinearAttention.Bidirectional(i[0], i[1], i[2], null, FusedLinearAttention.ParseFeatureMap(map), LinearAttentionKernels.DefaultEps, tensorCores: mma));
        foreach (int chunk in new[] { 64, 128 })
            yield return new KernelBenchCase($"relu causal chunk{chunk}", true, Make,
                i => LinearAttentionKernels.Causal(FeatureMaps.Apply("relu", i[0]), FeatureMaps.Apply("relu", i[1]), i[2], null, chunk: chunk));
        yield return new KernelBenchCase("relu causal chunk64 folded normalizer", true, Make,
            i => LinearAttentionKernels.CausalFoldedNormalizer(FeatureMaps.Apply("relu", i[0]), FeatureMaps.Apply("relu", i[1]), i[2], null));
        // Causal fused tensor-core kernels (FusedLinearAttention.Causal; the TorchSharp chunk form where they do not apply).
        foreach (var map in new[] { "relu", "elu" })
            yield return new KernelBenchCase($"{map} causal fused mma", true, Make,
                i => FusedLinearAttention.Causal(i[0], i[1], i[2], null, FusedLinearAttention.ParseFeatureMap(map)));
        yield return new KernelBenchCase("t2r bidirectional", false, MakeLearned,
            i => LinearAttentionKernels.Bidirectional(FeatureMapKernels.T2R(i[0], i[3], null), FeatureMapKernels.T2R(i[1], i[4], null), i[2], null));
        yield return new KernelBenchCase("elementwise_product causal chunk64 (unnormalized)", true, MakeLearned,
            i => LinearAttentionKernels.Causal(FeatureMapKernels.ElementwiseProduct(i[0], i[3], i[5], i[6], i[7]),
                FeatureMapKernels.ElementwiseProduct(i[1], i[4], i[5], i[6], i[7]), i[2], null, normalize: false));
        yield return new KernelBenchCase("dpfp bidirectional", false, Make,
            i => LinearAttentionKernels.Bidirectional(FeatureMapKernels.Dpfp(i[0]), FeatureMapKernels.Dpfp(i[1]), i[2], null));
        yield return new KernelBenchCase("dpfp causal chunk64", true, Make,
            i => LinearAttentionKernels.Causal(FeatureMapKernels.Dpfp(i[0]), FeatureMapKernels.Dpfp(i[1]), i[2], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Linear attention on the feature size of the map (dpfp 2·D·ν, t2r FeatureDim, else D); learned maps are parameters.</summary>
    internal static double Flops(FlopShape s, LinearMixerOptions o)
    {
        double f = o.FeatureMap.ToLowerInvariant() switch
        {
            "dpfp" => 2.0 * s.HeadDim * o.DpfpNu,
            "t2r" => o.FeatureDim > 0 ? o.FeatureDim : s.HeadDim,
            _ => s.HeadDim,
        };
        return FlopShape.LinearKernel(f, s.HeadDim, o.Normalize) * s.Heads;
    }
}

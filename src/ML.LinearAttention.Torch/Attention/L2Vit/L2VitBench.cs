using Microsoft.ML.LinearAttention.Attention.HiLo;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.L2Vit;

/// <summary>Kernel benchmark cases of L²ViT: the ReLU linear global attention and the 7-window local attention (sequence layout: 49 tokens per window).</summary>
internal static class L2VitBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => new[]
        {
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
        };
        yield return new KernelBenchCase("global relu linear", false, Make,
            i => LinearAttentionKernels.Bidirectional(nn.functional.relu(i[0]), nn.functional.relu(i[1]), i[2], null));
        yield return new KernelBenchCase("local window 7", false, Make, i => HiLoKernels.LocalWindow(i[0], i[1], i[2], null, null, 7));
    }
}

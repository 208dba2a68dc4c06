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

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Local layers: softmax in WindowSize² windows; global layers: normalised ReLU linear attention, F = D (alternating by layer: odd layers global).</summary>
    internal static double Flops(FlopShape s, L2VitOptions o)
    {
        bool global = o.Role == L2VitRole.Global || (o.Role == L2VitRole.Alternate && s.LayerIndex % 2 == 1);
        return (global ? FlopShape.LinearKernel(s.HeadDim, s.HeadDim) : 4 * Math.Min(s.T, (long)o.WindowSize * o.WindowSize) * s.HeadDim) * s.Heads;
    }
}

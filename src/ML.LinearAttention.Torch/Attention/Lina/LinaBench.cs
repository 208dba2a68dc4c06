using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lina;

/// <summary>Kernel benchmark cases of LINA (ReLU + 1e-6 maps inside the timed call, learned KV gates, fp32 core).</summary>
internal static class LinaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() =>
        [
            .. s.Qkv(),
            torch.ones(1, s.H, s.T, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.ones(1, s.H, s.T, dtype: s.DType, device: s.Device).requires_grad_(true),
        ];
        static Tensor Phi(Tensor x) => nn.functional.relu(x) + 1e-6;
        yield return new KernelBenchCase("kv-gated bidirectional fp32", false, Make,
            i => LinaKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], i[3], i[4], null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Division-normalised ReLU linear attention, F = D; the KV gate and the input conv are elementwise or parameters.</summary>
    internal static double Flops(FlopShape s, LinaOptions o)
        => FlopShape.LinearKernel(s.HeadDim, s.HeadDim) * s.Heads;
}

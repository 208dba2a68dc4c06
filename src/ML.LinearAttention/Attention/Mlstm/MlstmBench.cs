using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mlstm;

/// <summary>Kernel benchmark cases of mLSTM (sigmoid forget gate biased as xLSTM initialises it, no projections).</summary>
internal static class MlstmBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => new[]
        {
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, s.D, dtype: s.DType, device: s.Device).requires_grad_(true),
            torch.randn(s.B, s.H, s.T, dtype: s.DType, device: s.Device).requires_grad_(true),
            (torch.randn(s.B, s.H, s.T, dtype: s.DType, device: s.Device) + 4).requires_grad_(true),
            (torch.randn(s.B, s.H, s.T, dtype: s.DType, device: s.Device) + 4).requires_grad_(true),
        };
        yield return new KernelBenchCase("causal chunk64", true, Make, i => MlstmKernels.Causal(i[0], i[1], i[2], i[3], i[4], null));
        yield return new KernelBenchCase("bidirectional chunk64", false, Make, i => MlstmKernels.Bidirectional(i[0], i[1], i[2], i[3], i[4], i[5], null));
    }
}

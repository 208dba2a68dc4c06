using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mala;

/// <summary>Kernel benchmark cases of MALA (φ = elu+1 applied inside the timed call; with and without 1D RoPE).</summary>
internal static class MalaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        static Tensor Phi(Tensor x) => nn.functional.elu(x, 1.0) + 1;
        yield return new KernelBenchCase("bidirectional", false, Make,
            i => MalaKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], null));
        yield return new KernelBenchCase("bidirectional rope", false, Make, i =>
        {
            var (cos, sin) = Rope.Tables(s.T, s.D, null, s.Device);
            return MalaKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], null, cos, sin);
        });
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Normalised elu+1 linear attention, F = D (the RoPE numerator reuses the same state size); LePE is a parameter.</summary>
    internal static double Flops(FlopShape s, MalaOptions o)
        => FlopShape.LinearKernel(s.HeadDim, s.HeadDim) * s.Heads;
}

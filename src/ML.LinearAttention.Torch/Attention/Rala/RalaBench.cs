using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Rala;

/// <summary>Kernel benchmark cases of RALA (φ = elu+1 and 1D RoPE inside the timed call, as in the mixer).</summary>
internal static class RalaBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        static Tensor Phi(Tensor x) => nn.functional.elu(x, 1.0) + 1;
        yield return new KernelBenchCase("bidirectional rope", false, Make, i =>
        {
            var (cos, sin) = Rope.Tables(s.T, s.D, null, s.Device);
            return RalaKernels.Bidirectional(Phi(i[0]), Phi(i[1]), i[2], null, cos, sin);
        });
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Normalised elu+1 linear attention, F = D, plus the query-guided key weights (mean query · every key).</summary>
    internal static double Flops(FlopShape s, RalaOptions o)
        => (FlopShape.LinearKernel(s.HeadDim, s.HeadDim) + 2.0 * s.HeadDim) * s.Heads;
}

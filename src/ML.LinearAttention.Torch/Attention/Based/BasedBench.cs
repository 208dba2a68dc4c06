using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Based;

/// <summary>Kernel benchmark cases of Taylor linear attention (F = 16, 153 features) and the BASED core (+ SWA 256).</summary>
internal static class BasedBench
{
    private const int F = 16;

    private static Func<Tensor[]> Inputs(KernelBenchShape s) => () => [s.Randn(s.B, s.H, s.T, F), s.Randn(s.B, s.H, s.T, F), .. s.Qkv()];

    /// <summary>"taylor": the linear branch alone.</summary>
    internal static IEnumerable<KernelBenchCase> TaylorCases(KernelBenchShape s)
    {
        var make = Inputs(s);
        yield return new KernelBenchCase("taylor f16 bidirectional", false, make, i => BasedKernels.Linear(i[0], i[1], i[4], null));
        yield return new KernelBenchCase("taylor f16 causal chunk64", true, make, i => BasedKernels.Linear(i[0], i[1], i[4], null, causal: true));
    }

    /// <summary>"based": Taylor linear + banded sliding-window softmax (window 256).</summary>
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        var make = Inputs(s);
        yield return new KernelBenchCase("taylor f16 + swa 256 bidirectional", false, make, i => BasedKernels.Attention(i[0], i[1], i[2], i[3], i[4], null, 256));
        yield return new KernelBenchCase("taylor f16 + swa 256 causal", true, make, i => BasedKernels.Attention(i[0], i[1], i[2], i[3], i[4], null, 256, causal: true));
    }

    /// <summary>Attention FLOPs of Taylor linear attention: φ has 1 + F + F(F+1)/2 features (F = FeatureDim, 0 = D).</summary>
    internal static double TaylorFlops(FlopShape s, TaylorOptions o) => Taylor(s, o.FeatureDim) * s.Heads;

    /// <summary>Attention FLOPs of BASED: the Taylor branch plus window softmax (QKᵀ, PV over the band) when Window > 0.</summary>
    internal static double Flops(FlopShape s, BasedOptions o)
        => (Taylor(s, o.FeatureDim) + (o.Window > 0 ? 4 * s.BandKeys(o.Window) * s.HeadDim : 0)) * s.Heads;

    private static double Taylor(FlopShape s, int featureDim)
    {
        double f = featureDim > 0 ? featureDim : s.HeadDim;
        return FlopShape.LinearKernel(1 + f + f * (f + 1) / 2, s.HeadDim);
    }
}

using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>
/// The RMSNorm and multi-tensor AdamW parts of `bench kernels --verify-fused` on the CPU, where both sides take the
/// libtorch / per-tensor path: the cases run, are counted and pass (on a GPU the same code compares the kernels).
/// </summary>
public sealed class FusedBodyVerificationTests
{
    [Fact]
    public void RmsNormAndAdamWCasesRunAndPassOnTheCpuFallback()
    {
        Torch.Seed();
        var log = new StringWriter();
        int cases = 0, failures = 0;
        double worst = 0;
        FusedRmsNormVerification.Run(CPU, log, ref cases, ref failures, ref worst);
        Assert.Equal(24, cases);
        FusedAdamWVerification.Run(CPU, log, ref cases, ref failures, ref worst);
        Assert.Equal(27, cases);
        Assert.True(failures == 0, log.ToString());
        Assert.Contains("multi-tensor adamw (per-tensor on both sides) vs per-tensor, clipping that bites", log.ToString());
        Assert.Contains("PASS  rms norm bf16 x [2, 5, 768] · w", log.ToString());
    }

    [Fact]
    public void OnlyRunsTheNamedPartsAndRefusesAnUnknownOne()
    {
        Torch.Seed();
        var log = new StringWriter();
        Assert.Equal(0, FusedKernelVerification.Run(CPU, log, new[] { "RMSNorm" }));
        Assert.Contains("24 passed, 0 failed", log.ToString());
        Assert.DoesNotContain("adamw", log.ToString());
        var e = Assert.Throws<ArgumentException>(() => FusedKernelVerification.Run(CPU, new StringWriter(), new[] { "decay", "gla" }));
        Assert.Contains("--only gla", e.Message);
        Assert.Contains("linear, causal, hedgehog, decay, rmsnorm, adamw", e.Message);
    }
}

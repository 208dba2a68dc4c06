using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>Where `bench kernels` writes: its tables into docs/benchmarks, the fused-kernel profile (a diagnostic) elsewhere.</summary>
public sealed class KernelBenchmarkOptionsTests
{
    [Fact]
    public void ProfileFusedWritesOutsideDocsUnlessOutIsGiven()
    {
        Assert.Equal(Path.Combine("docs", "benchmarks"), KernelBenchmarkOptions.Parse(Array.Empty<string>()).OutputDirectory);
        Assert.Equal(Path.Combine("docs", "benchmarks"), KernelBenchmarkOptions.Parse(new[] { "--verify-fused" }).OutputDirectory);
        Assert.Equal(Path.Combine("artifacts", "benchmarks"), KernelBenchmarkOptions.Parse(new[] { "--profile-fused" }).OutputDirectory);
        Assert.Equal("p", KernelBenchmarkOptions.Parse(new[] { "--out", "p", "--profile-fused" }).OutputDirectory);
        Assert.Equal("p", KernelBenchmarkOptions.Parse(new[] { "--profile-fused", "--out", "p" }).OutputDirectory);
    }

    [Fact]
    public void ProfileDeltaIsADiagnosticToo()
    {
        var o = KernelBenchmarkOptions.Parse(new[] { "--profile-delta", "--lengths", "512,8192" });
        Assert.True(o.ProfileDelta);
        Assert.Equal(Path.Combine("artifacts", "benchmarks"), o.OutputDirectory);
        Assert.Equal(new long[] { 512, 8192 }, o.Lengths);
    }

    [Fact]
    public void ProfileDeltaTimesEveryStageOnTheCpu()
    {
        var dir = Path.Combine(Path.GetTempPath(), "delta-profile-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = KernelBenchmarkOptions.Parse(new[] { "--profile-delta", "--device", "cpu", "--dtype", "fp32", "--tokens", "128",
                "--lengths", "70", "--heads", "2", "--dim", "8", "--out", dir });
            var log = new StringWriter();
            Assert.Equal(0, KernelBenchmark.Run(options, log));
            var md = File.ReadAllText(Path.Combine(dir, "delta-profile.md"));
            foreach (var gate in new[] { "none", "head", "channel" })
            foreach (var stage in new[] { "intra-chunk products and decays", "UT transform", "chunk scan (loop)", "outputs", "whole causal call" })
                Assert.Contains($"| {gate} | {stage}", md);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }
}

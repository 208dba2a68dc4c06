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
}

using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Distributed;

/// <summary>`bench multigpu` on the CPU (ranks as threads): the runs, the report, the checks of --verify, bad options.</summary>
public sealed class MultiGpuBenchmarkTests
{
    [Fact]
    public void TheCommandRunsDataAndSequenceParallelAndWritesTheReport()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"multigpu-test-{Guid.NewGuid():N}");
        try
        {
            var o = MultiGpuOptions.Parse(new[] { "--device", "cpu", "--layers", "1", "--hidden", "16", "--heads", "2", "--length", "16", "--tokens", "32",
                "--sp-lengths", "33", "--steps", "1", "--warmup", "1", "--mechanisms", "linear_relu", "--out", dir, "--commit", "abc", "--machine", "test" });
            Assert.Equal(0, MultiGpuBenchmark.Run(o, TextWriter.Null));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "multigpu.json")));
            var rows = json.RootElement.GetProperty("rows").EnumerateArray().ToList();
            Assert.Equal(new[] { "1 GPU", "data parallel", "1 GPU (SP model)", "1 GPU (SP model)", "sequence parallel" },
                rows.Select(r => r.GetProperty("Mode").GetString()).ToArray());
            Assert.All(rows, r => Assert.True(r.GetProperty("TokensPerSecond").GetDouble() > 0));
            Assert.Equal(3, json.RootElement.GetProperty("efficiencies").GetArrayLength());
            var md = File.ReadAllText(Path.Combine(dir, "multigpu.md"));
            Assert.Contains("Scaling efficiency", md);
            Assert.Contains("commit `abc`", md);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void VerifyPassesOnThreadRanks()
    {
        var log = new StringWriter();
        Assert.Equal(0, MultiGpuBenchmark.Run(MultiGpuOptions.Parse(new[] { "--device", "cpu", "--verify" }), log));
        Assert.Contains("PASS data parallel", log.ToString());
        Assert.Contains("PASS sequence parallel", log.ToString());
    }

    [Fact]
    public void BadOptionsAreClearErrors()
    {
        Assert.Contains("--gpus", Assert.Throws<ArgumentException>(() => MultiGpuOptions.Parse(new[] { "--gpus", "0" })).Message);
        Assert.Contains("at least the number of GPUs", Assert.Throws<ArgumentException>(() => MultiGpuOptions.Parse(new[] { "--sp-lengths", "1" })).Message);
        Assert.Contains("Unknown option", Assert.Throws<ArgumentException>(() => MultiGpuOptions.Parse(new[] { "--bogus" })).Message);
    }
}

using System.Text.Json;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench cpu-training`: its options, and one tiny run of the default workload on SST-2 rows.</summary>
[Collection(ProcessWideSwitches.Name)]
public sealed class CpuTrainingBenchmarkTests
{
    [Fact]
    public void BadOptionsAreRejectedWithTheFix()
    {
        Assert.Contains("raise --rows", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--rows", "64" })).Message);
        Assert.Contains("minilm-full, default", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--workloads", "bert" })).Message);
        Assert.Contains("baseline, optimized", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--variants", "fast" })).Message);
        Assert.Contains("--nope", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--nope" })).Message);
        Assert.Equal(new[] { 2, 1 }, CpuTrainingBenchmarkOptions.Parse(new[] { "--threads", "2,1" }).Threads);
    }

    [SharedDataFact("sst2")]
    public void DefaultWorkloadRunsBothVariantsAndRestoresTheSwitches()
    {
        var dir = Directory.CreateTempSubdirectory("bench-cpu-training-").FullName;
        int threads = TorchSharp.torch.get_num_threads();
        try
        {
            var o = CpuTrainingBenchmarkOptions.Parse(new[] { "--workloads", "default", "--rows", "96", "--warmup", "1", "--steps", "2", "--repeats", "1",
                "--threads", "1", "--data-folder", SharedData.Root, "--out", dir, "--commit", "test", "--machine", "test machine" });
            var log = new StringWriter();
            Assert.Equal(0, CpuTrainingBenchmark.Execute(o, log));
            // the baseline variant turned the fast paths off only for its own fits
            Assert.True(CpuFastPaths.FusedAdamW && CpuFastPaths.FastDropout && CpuFastPaths.ExplicitScoresForShortSequences);
            Assert.Null(TrainingProfile.Current);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training-cpu.json")));
            var runs = json.RootElement.GetProperty("Runs").EnumerateArray().ToList();
            Assert.Equal(new[] { "baseline", "optimized", "bf16" }, runs.Select(r => r.GetProperty("Variant").GetString()));
            Assert.All(runs, r =>
            {
                Assert.True(r.GetProperty("TokensPerSecond").GetDouble() > 0);
                Assert.Equal(2, r.GetProperty("TimedSteps").GetInt32());
                Assert.True(r.GetProperty("ForwardMs").GetDouble() > 0 && r.GetProperty("BackwardMs").GetDouble() > 0 && r.GetProperty("OptimizerMs").GetDouble() > 0);
                Assert.Equal(1, r.GetProperty("Threads").GetInt32());
            });
            var md = File.ReadAllText(Path.Combine(dir, "training-cpu.md"));
            Assert.Contains("bench cpu-training --workloads default", md);
            Assert.Contains("commit test", md);
            Assert.Matches(@"\| default \| optimized \| 1 \| [\d,]+ \|", md);
            Assert.Matches(@"\| default \| bf16 \| 1 \| [\d,]+ \|", md);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            Microsoft.ML.LinearAttention.Runtime.TorchRuntime.SetCpuThreads(threads); // the fits set the process-wide count
        }
    }
}

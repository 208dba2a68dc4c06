using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench cpu-training --baseline-harness … --current-harness …`: its options, the harness's result line and the
/// comparison against the target (no harness is run: these are CPU-cheap checks of the parts around it).</summary>
public sealed class CpuTrainingBuildsTests
{
    [Fact]
    public void HarnessOptionsNeedBothExistingFiles()
    {
        var dir = Directory.CreateTempSubdirectory("cpu-training-builds-").FullName;
        try
        {
            string old = Path.Combine(dir, "old.dll"), current = Path.Combine(dir, "new.dll");
            File.WriteAllText(old, "");
            File.WriteAllText(current, "");
            var missing = Path.Combine(dir, "missing.dll");
            var e = Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--baseline-harness", missing, "--current-harness", current }));
            Assert.Contains("--baseline-harness", e.Message);
            Assert.Contains("does not exist", e.Message);
            Assert.Contains("tools/cpu-baseline/build.sh", e.Message);
            Assert.Contains("--current-harness too", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--baseline-harness", old })).Message);
            Assert.Contains("--baseline-harness too", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--current-harness", current })).Message);
            Assert.Contains("auto, fp32, bf16", Assert.Throws<ArgumentException>(() => CpuTrainingBenchmarkOptions.Parse(new[] { "--harness-precisions", "fp16" })).Message);

            var o = CpuTrainingBenchmarkOptions.Parse(new[] { "--baseline-harness", old, "--current-harness", current, "--harness-precisions", "auto,fp32" });
            Assert.Equal((old, current), (o.BaselineHarness, o.CurrentHarness));
            Assert.Equal(new[] { "auto", "fp32" }, o.HarnessPrecisions);
            Assert.Equal(new[] { "auto" }, CpuTrainingBenchmarkOptions.Parse(Array.Empty<string>()).HarnessPrecisions);
            Assert.Null(CpuTrainingBenchmarkOptions.Parse(Array.Empty<string>()).BaselineHarness);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ResultLineIsFoundAmongOtherOutput()
    {
        const string json = "{\"LibraryRoot\":\"cpu-baseline/x/\",\"LibraryCommit\":\"df3f3f1\",\"LibraryAssembly\":\"a.dll\",\"Workload\":\"minilm-full\",\"Precision\":\"auto\"," +
                            "\"PrecisionUsed\":\"fp32\",\"Threads\":2,\"Rows\":1024,\"WarmupSteps\":2,\"TimedSteps\":8,\"Tokens\":3465,\"TokenCount\":\"reconstructed\"," +
                            "\"ReconstructedTokens\":3465.1,\"Seconds\":4.1,\"TokensPerSecond\":845.1,\"FitSeconds\":8.4}";
        var r = CpuTrainingBuilds.ParseResult("warning: something\n" + CpuTrainingBuilds.ResultPrefix + json + "\n", "h.dll");
        Assert.Equal(("df3f3f1", "fp32", 8, 3465L, "reconstructed"), (r.LibraryCommit, r.PrecisionUsed, r.TimedSteps, r.Tokens, r.TokenCount));
        Assert.Equal(845.1, r.TokensPerSecond);
        var e = Assert.Throws<InvalidDataException>(() => CpuTrainingBuilds.ParseResult("Hello\n", "h.dll"));
        Assert.Contains("h.dll printed no 'CPU-BASELINE-RESULT' line", e.Message);
    }

    [Fact]
    public void ComparisonJudgesTheTargetOnTheMedians()
    {
        static CpuTrainingBuilds.Summary S(string build, string workload, string precision, double median) =>
            new(build, build == "baseline" ? "df3f3f1" : "abc1234", workload, precision, 2, build == "current" && precision == "auto" ? "bf16" : "fp32", median, median * 0.9, median * 1.1, 450, 5);
        var summaries = new List<CpuTrainingBuilds.Summary>
        {
            S("baseline", "minilm-full", "auto", 1000), S("current", "minilm-full", "auto", 3100),
            S("baseline", "minilm-full", "fp32", 1000), S("current", "minilm-full", "fp32", 1600),
            S("baseline", "default", "auto", 8000), S("current", "default", "auto", 14000),
        };
        var comparisons = CpuTrainingBuilds.Compare(summaries);
        Assert.Equal(3, comparisons.Count);
        Assert.True(comparisons[0].MeetsTarget);
        Assert.Equal(3.1, comparisons[0].Ratio, 6);
        Assert.False(comparisons[1].MeetsTarget);

        var report = new CpuTrainingBuilds.Report("df3f3f1", "abc1234", "$TMPDIR/cpu-baseline/df3f3f1/", "$TMPDIR/cpu-baseline/abc1234/", "old.dll", "new.dll",
            new List<CpuTrainingBuilds.Run>(), summaries, comparisons, 0.0001);
        var md = CpuTrainingBuilds.Markdown(report, CpuTrainingBenchmarkOptions.Parse(Array.Empty<string>()), 2048);
        Assert.Contains("## Against df3f3f1 (same run)", md);
        Assert.Contains("**met at some settings only**", md);
        Assert.Contains("3.10× with Precision Auto (each build's default: bf16 on abc1234, fp32 on df3f3f1)", md);
        Assert.Contains("| minilm-full | fp32 | 2 | 1,000 | 900 – 1,100 | fp32 | 450 | 1,600 | 1,440 – 1,760 | fp32 | 450 | 1.60× | no |", md);
        Assert.Contains("within 0.01 %", md);
    }

    [Fact]
    public void ReconstructionErrorIsMeasuredOnExactCountsOnly()
    {
        static CpuTrainingBuilds.Run R(string count, long tokens, double rebuilt) =>
            new("current", "abc1234", "default", "auto", "fp32", 1, 2, 26, tokens, count, rebuilt, 1, tokens, 2, "/x/");
        Assert.Equal(0.01, CpuTrainingBuilds.MaxReconstructionError(new[] { R("exact", 1000, 1010), R("exact", 1000, 995), R("reconstructed", 1000, 2000) }), 9);
        Assert.True(double.IsNaN(CpuTrainingBuilds.MaxReconstructionError(new[] { R("reconstructed", 1000, 1000) })));
    }
}

using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>
/// `bench long-documents`: its options refuse what would fail only after a child process built the model (an unknown
/// mechanism, a length outside MaxSequenceLength's range, 8..LinearAttentionOptions.MaxSupportedSequenceLength, a width
/// the heads do not divide), and one child run — Fit for one step on one document and Transform of it, in process —
/// reports its seconds, peak memory and tokens.
/// </summary>
public class LongDocumentBenchmarkTests
{
    [Fact]
    public void BadOptionsAreRefusedBeforeAnyRunWithTheFix()
    {
        Assert.Contains("Unknown mechanism 'nope'", Assert.Throws<ArgumentException>(() => LongDocumentOptions.Parse(new[] { "--mechanisms", "linear_relu,nope" })).Message);
        // The estimators' limit with rotary positions, 2²⁰ tokens, is the benchmark's too (the default stays 131,072).
        Assert.Contains("8..1048576", Assert.Throws<ArgumentException>(() => LongDocumentOptions.Parse(new[] { "--length", "1048577" })).Message);
        Assert.Contains("8..1048576", Assert.Throws<ArgumentException>(() => LongDocumentOptions.Parse(new[] { "--length", "4" })).Message);
        Assert.Equal(1 << 20, LongDocumentOptions.Parse(new[] { "--length", "1048576" }).Length);
        Assert.Equal(262144, LongDocumentOptions.Parse(new[] { "--length", "262144" }).Length);
        Assert.Contains("multiple of --heads", Assert.Throws<ArgumentException>(() => LongDocumentOptions.Parse(new[] { "--hidden", "100", "--heads", "12" })).Message);
        Assert.Contains("Unknown option", Assert.Throws<ArgumentException>(() => LongDocumentOptions.Parse(new[] { "--lenght", "8" })).Message);
        var o = LongDocumentOptions.Parse(new[] { "--mechanisms", "linear_relu,hybrid,softmax", "--budget", "60" });
        Assert.Equal(new[] { "linear_relu", "hybrid", "softmax" }, o.Mechanisms);
        Assert.Equal(131072, o.Length);
        Assert.Equal(60, o.BudgetSeconds);
    }

    [Fact]
    public void OneChildRunFitsOneStepScoresTheDocumentAndReportsIt()
    {
        var o = LongDocumentOptions.Parse(new[] { "--child", "linear_relu", "--length", "96", "--layers", "1", "--hidden", "32", "--heads", "2", "--device", "cpu" });
        var log = new StringWriter();
        Assert.Equal(0, LongDocumentBenchmark.Run(o, log));
        using var result = JsonDocument.Parse(log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith('{')));
        var r = result.RootElement;
        Assert.Equal("ok", r.GetProperty("Status").GetString());
        Assert.True(r.GetProperty("FitSeconds").GetDouble() > 0 && r.GetProperty("ScoreSeconds").GetDouble() > 0);
        Assert.True(r.GetProperty("PeakGiB").GetDouble() > 0);
        Assert.Equal(96, r.GetProperty("Tokens").GetInt32());
    }
}

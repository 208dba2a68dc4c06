using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Pretrained;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench quality`: its options, its data sets, and the record it writes (on runs that train nothing heavy).</summary>
public sealed class QualityBenchmarkTests
{
    private static string Data => SharedData.Folder() ?? throw new InvalidOperationException("shared/data (../shared/data from the repository root) is needed by this test.");

    [Fact]
    public void OptionsCoverTheSevenDataSetsAtThreeSizesAndRejectWhatTheyDoNotKnow()
    {
        var o = QualityBenchmarkOptions.Parse(Array.Empty<string>());
        Assert.Equal(new[] { "sst2", "imdb-reviews", "github-issues-corefx", "bbc-news", "uci-sentiment-sentences", "wikipedia-detox-250", "stsb" }, o.Datasets);
        Assert.Equal(new[] { 1000, 4000, QualityBenchmarkOptions.All }, o.Sizes);
        Assert.Null(o.BudgetSeconds);
        var p = QualityBenchmarkOptions.Parse(new[] { "--size", "small", "--sizes", "1000,all", "--datasets", "stsb,sst2", "--budget", "1500", "--only", "sdca,mp" });
        Assert.Equal(new[] { 1000, QualityBenchmarkOptions.All }, p.Sizes);
        Assert.Equal(new[] { "stsb", "sst2" }, p.Datasets);
        Assert.Equal(1500, p.BudgetSeconds);
        Assert.Equal(new[] { "sdca", "mp" }, p.Only);
        Assert.Equal(400, p.TestRows);
        Assert.Contains("unknown data set 'nope'", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--datasets", "sst2,nope" })).Message);
        Assert.Contains("unknown method 'gpt'", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--only", "gpt" })).Message);
        Assert.Contains("'x' is not a positive integer", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--sizes", "1000,x" })).Message);
        Assert.Contains("use auto, fp32 or bf16", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--precision", "fp8" })).Message);
        Assert.Equal(Training.TrainingPrecision.BFloat16, QualityBenchmarkOptions.Parse(new[] { "--precision", "bf16" }).Precision);
        Assert.Null(QualityBenchmarkOptions.Parse(Array.Empty<string>()).Precision);
        Assert.Contains("--budget", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--budget", "-5" })).Message);
        Assert.Contains("needs a value", Assert.Throws<ArgumentException>(() => QualityBenchmarkOptions.Parse(new[] { "--sizes" })).Message);
    }

    [Theory]
    [InlineData("sst2", false, 2)]
    [InlineData("imdb-reviews", false, 2)]
    [InlineData("github-issues-corefx", false, 22)]
    [InlineData("bbc-news", false, 5)]
    [InlineData("uci-sentiment-sentences", false, 2)]
    [InlineData("wikipedia-detox-250", false, 2)]
    [InlineData("stsb", true, 0)]
    public void EveryDataSetReadsIntoATrainingPoolAndATestSet(string name, bool regression, int classes)
    {
        var data = QualityData.Load(name, Data, testRows: 300);
        Assert.Equal(regression, data.Regression);
        Assert.InRange(data.Test.Count, 50, 300);
        Assert.True(data.Train.Count > data.Test.Count / 2, $"{name}: {data.Train.Count} training rows");
        Assert.All(data.Train.Take(200), r => Assert.False(string.IsNullOrWhiteSpace(r.Text)));
        if (regression) Assert.All(data.Train, r => Assert.InRange(r.Target, 0f, 5f));
        else Assert.Equal(classes, data.Train.Concat(data.Test).Select(r => r.Label).Distinct().Count());
        Assert.Empty(data.Test.Intersect(data.Train)); // distinct row objects: no row is in both
    }

    [Fact]
    public void ARunWritesMarkdownAndJsonWithMetricsAndListsWhatTheBudgetSkipped()
    {
        var dir = Path.Combine(Path.GetTempPath(), "quality-" + Guid.NewGuid().ToString("N"));
        try
        {
            var o = QualityBenchmarkOptions.Parse(new[] { "--datasets", "wikipedia-detox-250,stsb", "--sizes", "120,all", "--test", "40", "--only", "sdca",
                "--data-folder", Data, "--out", dir, "--commit", "abc1234", "--machine", "test box", "--device", "cpu" });
            Assert.Equal(0, QualityBenchmark.Run(o, TextWriter.Null));
            var md = File.ReadAllText(Path.Combine(dir, "quality.md"));
            Assert.Contains("commit abc1234", md);
            Assert.DoesNotContain("partial record", md);
            Assert.Contains("## wikipedia-detox-250", md);
            Assert.Contains("### all (", md);
            Assert.Contains("| FeaturizeText + SDCA (ML.NET baseline) |", md);
            // The issue's targets, one column each; a method that did not run leaves its cell empty.
            Assert.Contains("| converted ≥ 98 % of full (1,000 rows), ≥ 99 % (more) | MP ≥ linear probe | MP+ ≥ MP | LoRA ≥ 97 % of full |", md);
            Assert.Matches(@"\| wikipedia-detox-250 \| all \(\d+\) \| – \| – \| – \| – \|", md);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "quality.json")));
            Assert.True(json.RootElement.GetProperty("finished").GetBoolean());
            var points = json.RootElement.GetProperty("points").EnumerateArray().ToList();
            Assert.Equal(4, points.Count); // 2 data sets × 2 sizes
            var detox = points.First(p => p.GetProperty("dataset").GetString() == "wikipedia-detox-250");
            Assert.InRange(detox.GetProperty("accuracy").GetDouble(), 0.5, 1.0);
            Assert.True(detox.GetProperty("logLoss").GetDouble() > 0);
            var sts = points.First(p => p.GetProperty("dataset").GetString() == "stsb");
            Assert.Equal(JsonValueKind.Number, sts.GetProperty("rSquared").ValueKind);
            Assert.Equal(JsonValueKind.Null, sts.GetProperty("accuracy").ValueKind);

            var skipped = QualityBenchmarkOptions.Parse(new[] { "--datasets", "wikipedia-detox-250", "--sizes", "100", "--test", "20", "--only", "sdca,probe",
                "--budget", "0.001", "--data-folder", Data, "--out", dir, "--device", "cpu" });
            Assert.Equal(0, QualityBenchmark.Run(skipped, TextWriter.Null));
            md = File.ReadAllText(Path.Combine(dir, "quality.md"));
            // The budget is checked before each point: SDCA may start within the first millisecond, the probe cannot.
            Assert.Matches(@"\*\*What ran:\*\* [01] point\(s\) measured, [12] skipped \(budget\)", md);
            Assert.Matches(@"Skipped: wikipedia-detox-250 100: (sdca, )?probe\.", md);
            Assert.Contains("| Linear probe (frozen encoder) | – | – | – | – | – | – | skipped: not run: the budget of 0 s was spent |", md);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }
}

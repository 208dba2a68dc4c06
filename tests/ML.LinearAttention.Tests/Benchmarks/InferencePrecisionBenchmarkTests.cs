using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench inference --precision` with its agreement on real rows, and `bench inference-cpu`, end to end at tiny sizes.</summary>
public sealed class InferencePrecisionBenchmarkTests
{
    private static TrainingBenchmarkOptions Tiny(string outDir, params string[] extra) => TrainingBenchmarkOptions.Parse("inference",
        new[] { "--layers", "1", "--hidden", "16", "--heads", "2", "--tokens", "64", "--device", "cpu", "--lengths", "16", "--rows", "16", "--timed-seconds", "0",
                "--commit", "test", "--machine", "test machine", "--out", outDir }.Concat(extra).ToArray(), InferenceBenchmark.Defaults);

    [SharedDataFact("ag-news")]
    public void InferenceBenchmarkScoresEachPrecisionAndMeasuresAgreement()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-inference-precision-").FullName;
        try
        {
            var o = Tiny(dir, "--mechanisms", "linear_relu", "--precision", "fp32,bf16", "--data-folder", SharedData.Root,
                "--agreement-train", "64", "--agreement-rows", "40");
            Assert.Equal(0, InferenceBenchmark.Run(o, TextWriter.Null));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "inference.json")));
            var points = json.RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Equal(new[] { "fp32", "bf16" }, points.Select(p => p.GetProperty("Precision").GetString()));
            Assert.All(points, p => Assert.True(p.GetProperty("RowsPerSecond").GetDouble() > 0, p.ToString()));
            var agreement = Assert.Single(json.RootElement.GetProperty("Agreement").EnumerateArray());
            Assert.Equal("bf16", agreement.GetProperty("Precision").GetString());
            Assert.Equal(40, agreement.GetProperty("Rows").GetInt32());
            Assert.InRange(agreement.GetProperty("ChangedShare").GetDouble(), 0, 0.2);
            Assert.InRange(agreement.GetProperty("MaxScoreDifference").GetDouble(), 1e-7, 0.1); // measured, and small
            var md = File.ReadAllText(Path.Combine(dir, "inference.md"));
            Assert.Contains("| linear_relu (bf16) |", md);
            Assert.Contains("rows whose class changes", md);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void PrecisionListsAreCheckedWithClearErrors()
    {
        var bad = Assert.Throws<ArgumentException>(() => Tiny("x", "--precision", "fp32,fp8"));
        Assert.Contains("fp8", bad.Message);
        var fp16 = Assert.Throws<ArgumentException>(() => InferenceBenchmark.Precisions(Tiny("x", "--precision", "fp16"), cuda: false));
        Assert.Contains("CUDA", fp16.Message);
        Assert.Equal(new[] { InferencePrecision.Float32 }, InferenceBenchmark.Precisions(Tiny("x"), cuda: false));
        Assert.Equal(new[] { InferencePrecision.Float32, InferencePrecision.BFloat16 }, InferenceBenchmark.Precisions(Tiny("x"), cuda: true));
    }

    [SharedDataFact("imdb-reviews")]
    public void InferenceCpuBenchmarkWritesLatencyBesideMlNet()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-inference-cpu-").FullName;
        try
        {
            var log = new StringWriter();
            Assert.Equal(0, InferenceCpuBenchmark.Run(new[] { "--models", "default", "--precision", "fp32,bf16", "--train", "24", "--test", "12",
                "--predictions", "10", "--data-folder", SharedData.Root, "--out", dir, "--commit", "test", "--machine", "test machine" }, log));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "inference-cpu.json")));
            var points = json.RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Equal(3, points.Count); // ML.NET, then the default model at fp32 and bf16
            Assert.StartsWith("ML.NET FeaturizeText", points[0].GetProperty("Model").GetString());
            Assert.Equal(new[] { "fp32", "fp32", "bf16" }, points.Select(p => p.GetProperty("Precision").GetString()));
            Assert.All(points, p =>
            {
                Assert.True(p.GetProperty("LatencyP50Ms").GetDouble() > 0);
                Assert.True(p.GetProperty("LatencyP95Ms").GetDouble() >= p.GetProperty("LatencyP50Ms").GetDouble());
                Assert.True(p.GetProperty("BatchRowsPerSecond").GetDouble() > 0);
            });
            Assert.Equal(JsonValueKind.Null, points[0].GetProperty("RowsAt128Tokens").ValueKind);
            Assert.All(points.Skip(1), p => Assert.InRange(p.GetProperty("RowsAt128Tokens").GetDouble(), 0.9, 1.0)); // 120 words fill 128 tokens
            Assert.Contains("| ML.NET FeaturizeText + SdcaMaximumEntropy |", File.ReadAllText(Path.Combine(dir, "inference-cpu.md")));

            var error = Assert.Throws<ArgumentException>(() => InferenceCpuBenchmark.Run(new[] { "--precision", "fp16" }, TextWriter.Null));
            Assert.Contains("CUDA", error.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.L2Vit;
using KernelOptions = Microsoft.ML.LinearAttention.Attention.PlainLinear.LinearMixerOptions;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench training` and `bench inference` end to end at tiny sizes on the CPU, the FLOP formula, the PNG writer.</summary>
public sealed class BenchmarkCommandTests
{
    private static TrainingBenchmarkOptions Tiny(string command, string outDir, params string[] extra) => TrainingBenchmarkOptions.Parse(command,
        new[] { "--layers", "2", "--hidden", "16", "--heads", "2", "--tokens", "64", "--warmup", "1", "--steps", "1", "--device", "cpu",
                "--commit", "test", "--machine", "test machine", "--out", outDir }.Concat(extra).ToArray(),
        command == "inference" ? InferenceBenchmark.Defaults : null);

    [Fact]
    public void TrainingBenchmarkRunsEndToEndAndWritesTablesJsonAndPlots()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-training-").FullName;
        try
        {
            var log = new StringWriter();
            var o = Tiny("training", dir, "--lengths", "16,32", "--mechanisms", "softmax,linear_relu,hybrid", "--hybrid", "1:1");
            Assert.Equal(0, TrainingBenchmark.Run(o, log));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training.json")));
            var points = json.RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Equal(6, points.Count);
            Assert.All(points, p => Assert.True(p.GetProperty("TokensPerSecond").GetDouble() > 0, p.ToString()));
            Assert.All(points, p => Assert.Equal(1, p.GetProperty("MeasuredSteps").GetInt32()));
            Assert.Equal("test", json.RootElement.GetProperty("meta").GetProperty("commit").GetString());
            var md = File.ReadAllText(Path.Combine(dir, "training.md"));
            Assert.Contains("| softmax (Rope, N = ", md);
            Assert.Contains("hybrid 1:1 (hedgehog + softmax@1)", md);
            Assert.Contains("bench training --layers 2", md);
            foreach (var png in new[] { "training-throughput.png", "training-memory.png" })
            {
                var (w, h, _) = DecodePng(File.ReadAllBytes(Path.Combine(dir, png)));
                Assert.Equal((1200, 640), (w, h));
            }
            Assert.Contains("tok/s", log.ToString());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TrainingBenchmarkRecordsTimeBoundsAndCheckpointingRuns()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-bound-").FullName;
        try
        {
            // A zero bound stops each point at its first report: recorded, not thrown.
            Assert.Equal(0, TrainingBenchmark.Run(Tiny("training", dir, "--lengths", "16", "--mechanisms", "softmax", "--seconds", "0"), TextWriter.Null));
            var point = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training.json"))).RootElement.GetProperty("Points")[0];
            Assert.StartsWith("time bound", point.GetProperty("Status").GetString());
            Assert.Equal(JsonValueKind.Null, point.GetProperty("TokensPerSecond").ValueKind);
            // Activation checkpointing through the estimator option, and the command's budget.
            Assert.Equal(0, TrainingBenchmark.Run(Tiny("training", dir, "--lengths", "16", "--mechanisms", "hedgehog", "--checkpointing"), TextWriter.Null));
            point = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training.json"))).RootElement.GetProperty("Points")[0];
            Assert.True(point.GetProperty("TokensPerSecond").GetDouble() > 0);
            Assert.Contains("activation checkpointing on", File.ReadAllText(Path.Combine(dir, "training.md")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void KernelBenchmarkRunsOnTheCpuAndResumesFromAMechanism()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-kernels-").FullName;
        try
        {
            string[] Args(params string[] extra) => new[] { "--device", "cpu", "--dtype", "fp32", "--tokens", "32", "--lengths", "16", "--heads", "2",
                "--dim", "16", "--seconds", "0.01", "--commit", "test", "--machine", "test machine", "--out", dir }.Concat(extra).ToArray();
            Assert.Equal(0, KernelBenchmark.Run(KernelBenchmarkOptions.Parse(Args("--only", "softmax,linear", "--cases", "sdpa,relu bidirectional fused mma")), TextWriter.Null));
            var md = File.ReadAllText(Path.Combine(dir, "kernels.md"));
            Assert.Contains("| softmax | sdpa |", md);
            Assert.Contains("| linear | relu bidirectional fused mma |", md);   // the TorchSharp fallback on the CPU
            Assert.Contains("## Milliseconds", md);
            Assert.DoesNotContain("GPU milliseconds", md);                       // no GPU clock on the CPU
            Assert.DoesNotContain("Partial", md);
            var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "kernels.json"))).RootElement;
            Assert.True(json.GetProperty("Complete").GetBoolean());
            Assert.All(json.GetProperty("Results").EnumerateArray(), r => Assert.True(r.GetProperty("FwdBwdMs").GetDouble() > 0, r.ToString()));
            // --from skips the mechanisms that sort before it (hedgehog < linear), to resume a run cut short.
            Assert.Equal(0, KernelBenchmark.Run(KernelBenchmarkOptions.Parse(Args("--only", "hedgehog,softmax", "--from", "linear", "--cases", "sdpa,bidirectional")), TextWriter.Null));
            var resumed = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "kernels.json"))).RootElement.GetProperty("Results").EnumerateArray()
                .Select(r => r.GetProperty("Mechanism").GetString()).Distinct().ToList();
            Assert.Equal(new[] { "softmax" }, resumed);
        }
        finally { Directory.Delete(dir, true); }
        var unknown = Assert.Throws<ArgumentException>(() => KernelBenchmark.Run(KernelBenchmarkOptions.Parse(new[] { "--device", "cpu", "--from", "nope" }), TextWriter.Null));
        Assert.Contains("--from names an unknown mechanism 'nope'", unknown.Message);
    }

    [Theory]
    [InlineData("oom@32")]
    [InlineData("exit@32")]
    public void IsolatedRunsMeasureAgainWithCheckpointingAfterAnOutOfMemoryOrADeadProcess(string failure)
    {
        // Each mechanism runs in a child process of the samples app; the failing length is measured again in a fresh
        // process with activation checkpointing, which stays on for the longer lengths.
        var dir = Directory.CreateTempSubdirectory("bench-isolated-").FullName;
        try
        {
            var log = new StringWriter();
            Assert.Equal(0, TrainingBenchmark.Run(Tiny("training", dir, "--lengths", "16,32,64", "--mechanisms", "linear_relu", "--isolate",
                "--simulate-failure", failure), log));
            var points = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training.json"))).RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Equal(new long[] { 16, 32, 64 }, points.Select(p => p.GetProperty("T").GetInt64()));
            Assert.All(points, p => Assert.True(p.GetProperty("TokensPerSecond").GetDouble() > 0, p.ToString()));
            Assert.Equal(new[] { false, true, true }, points.Select(p => p.GetProperty("Checkpointed").GetBoolean()));
            Assert.Contains("measured again in a fresh process with activation checkpointing", log.ToString());
            Assert.Contains(" †", File.ReadAllText(Path.Combine(dir, "training.md")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void InferenceBenchmarkScoresThroughTransform()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-inference-").FullName;
        try
        {
            Assert.Equal(0, InferenceBenchmark.Run(Tiny("inference", dir, "--lengths", "16", "--mechanisms", "linear_relu,softmax", "--rows", "40", "--timed-seconds", "0.2"), TextWriter.Null));
            var points = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "inference.json"))).RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Equal(2, points.Count);
            // Whole passes over the 40 rows, repeated until 0.2 s had passed.
            Assert.All(points, p => Assert.True(p.GetProperty("Rows").GetInt32() is >= 40 and var n && n % 40 == 0, $"{p.GetProperty("Rows")} rows"));
            Assert.All(points, p => Assert.True(p.GetProperty("Seconds").GetDouble() >= 0.2));
            Assert.All(points, p => Assert.True(p.GetProperty("RowsPerSecond").GetDouble() > 0));
            Assert.Contains("| linear_relu |", File.ReadAllText(Path.Combine(dir, "inference.md")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void OptionsAndMechanismsAreParsedWithClearErrors()
    {
        var o = TrainingBenchmarkOptions.Parse("training", new[] { "--lengths", "512,2K,64k", "--tokens", "64K" });
        Assert.Equal(new long[] { 512, 2048, 65536 }, o.Lengths);
        Assert.Equal(65536, o.TokensPerStep);
        Assert.Contains("Unknown option '--bogus'", Assert.Throws<ArgumentException>(() => TrainingBenchmarkOptions.Parse("training", new[] { "--bogus" })).Message);
        Assert.Contains("multiple of --heads", Assert.Throws<ArgumentException>(() => TrainingBenchmarkOptions.Parse("training", new[] { "--hidden", "10", "--heads", "3" })).Message);

        var list = BenchmarkMechanism.ParseList("softmax,linear{\"FeatureMap\":\"relu\",\"Normalize\":true},simple_gla,hybrid", 4, "3:1", "hedgehog");
        Assert.Equal(4, list.Count);
        Assert.Equal("relu", ((KernelOptions)list[1].Layers[0].Options!).FeatureMap);
        Assert.Equal(new[] { "hedgehog", "hedgehog", "hedgehog", "softmax" }, list[3].Layers.Select(l => l.Name));
        Assert.Equal(PositionEncoding.Rope, list[0].Position(16, 2));
        Assert.Equal(PositionEncoding.None, list[2].Position(16, 2));
        Assert.Contains("Known:", Assert.Throws<ArgumentException>(() => BenchmarkMechanism.ParseList("softmaxx", 2, "3:1", "hedgehog")).Message);
        Assert.True(TrainingBenchmark.IsOutOfMemory(new InvalidOperationException("Fit failed", new System.Runtime.InteropServices.ExternalException(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB"))));
        Assert.False(TrainingBenchmark.IsOutOfMemory(new ArgumentException("shape mismatch")));
    }

    [Fact]
    public void FlopFormulaMatchesHandCounts()
    {
        const long t = 128;
        const int h = 4, d = 16;
        double Attention(string name, MixerOptions? options = null) => ModelFlops.AttentionForwardPerToken(name, options, t, h, d, out _);
        Assert.Equal(4.0 * 128 * 16 * 4, Attention("softmax"));                              // QKᵀ + PV
        Assert.Equal(4.0 * 16 * 16 * 4 + 4 * 16 * 4, Attention("linear", new KernelOptions { FeatureMap = "relu" }));
        Assert.Equal(4.0 * 32 * 16 * 4 + 4 * 32 * 4, Attention("hedgehog"));                // F = 2·D
        Assert.Equal(2 * (2.0 * 64 * 32 + 4 * 16 * 16) * 4, Attention("simple_gla"));        // c = 64, Dk = Dv = 16
        Assert.Equal(2 * (6.0 * 64 * 16 + 4 * 64 * 32 + 64.0 * 64 / 3 + 6 * 16 * 32) * 4, Attention("gated_deltanet", new GatedDeltaNetOptions()), 6);
        Assert.Equal(4.0 * 16 * 16 * 4 + 4 * 16 * 4, Attention("mala"));                    // elu+1, F = D; LePE is a parameter
        Assert.Equal(4.0 * 49 * 16 * 4, Attention("l2vit", new L2VitOptions { Role = L2VitRole.Local }));  // 7×7 windows
        Assert.Equal(8.0 * 49 * 16 * 4, Attention("agent"));                                 // gather and broadcast through 49 agents
        Assert.Equal(0, ModelFlops.AttentionForwardPerToken("van", null, t, h, d, out bool known)); // convolutions only: all in N
        Assert.True(known);

        // 2 softmax layers, C = 64, FFN 4×: per block 4C² (q, k, v, o) + 8C² (FFN); head C² + 2C.
        var config = new EncoderConfig { VocabularySize = 100, ModelDim = 64, NumHeads = 4, NumLayers = 2, Mixer = "softmax", Outputs = 2 };
        long n = ModelFlops.MatrixParameters(config);
        Assert.Equal(2 * 12 * 64 * 64 + 64 * 64 + 2 * 64, n);
        var layers = Enumerable.Range(0, 2).Select(_ => new LayerMixer("softmax")).ToList();
        Assert.Equal(6.0 * n + 3 * 2 * Attention("softmax"), ModelFlops.TrainingPerToken(n, layers, t, h, d, out bool all));
        Assert.True(all);
    }

    [Fact]
    public void PngWriterProducesAValidImage()
    {
        Assert.Equal(0xCBF43926u, PlotPng.Crc32(Encoding.ASCII.GetBytes("123456789"))); // the CRC-32 check value
        var rgb = new byte[] { 255, 0, 0, 0, 255, 0, 0, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
        var (w, h, pixels) = DecodePng(PlotPng.Encode(3, 2, rgb));
        Assert.Equal((3, 2), (w, h));
        Assert.Equal(rgb, pixels);
        Assert.Equal("2K", PlotLines.ShortNumber(2048, binary: true));
        Assert.Equal("64K", PlotLines.ShortNumber(65536, binary: true));
        Assert.Equal("1.5K", PlotLines.ShortNumber(1500));
        Assert.Equal("2.5M", PlotLines.ShortNumber(2.5e6));
    }

    /// <summary>Checks the signature and every chunk's CRC, and inflates the pixels of an 8-bit RGB PNG without filters.</summary>
    private static (int Width, int Height, byte[] Rgb) DecodePng(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png[..8]);
        int pos = 8, width = 0, height = 0;
        var idat = new MemoryStream();
        while (pos < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            string type = Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, length);
            Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + length)), PlotPng.Crc32(png.AsSpan(pos + 4, 4 + length)));
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.Equal(8, data[8]);
                Assert.Equal(2, data[9]);
            }
            else if (type == "IDAT") idat.Write(data);
            pos += 12 + length;
        }
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        var raw = new MemoryStream();
        z.CopyTo(raw);
        var bytes = raw.ToArray();
        Assert.Equal(height * (1 + 3 * width), bytes.Length);
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, bytes[y * (1 + 3 * width)]);
            Array.Copy(bytes, y * (1 + 3 * width) + 1, rgb, y * 3 * width, 3 * width);
        }
        return (width, height, rgb);
    }
}

using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>`bench profile` end to end on a tiny encoder on the CPU.</summary>
public sealed class StepProfileTests
{
    [Fact]
    public void ProfileSplitsTheStepIntoCategoriesAndWritesTheTables()
    {
        Torch.Seed();
        var dir = Directory.CreateTempSubdirectory("bench-profile-").FullName;
        try
        {
            var o = TrainingBenchmarkOptions.Parse("profile", new[] { "--layers", "2", "--hidden", "16", "--heads", "2", "--tokens", "64", "--lengths", "32",
                "--mechanisms", "linear_relu", "--warmup", "1", "--steps", "1", "--device", "cpu", "--commit", "test", "--machine", "test machine", "--out", dir },
                StepProfile.Defaults);
            var log = new StringWriter();
            Assert.Equal(0, StepProfile.Run(o, log));
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "training-profile.json")));
            var points = json.RootElement.GetProperty("Points").EnumerateArray().ToList();
            Assert.Single(points);
            foreach (var p in points)
            {
                Assert.Equal(JsonValueKind.Null, p.GetProperty("Status").ValueKind);
                Assert.True(p.GetProperty("WallMsPerStep").GetDouble() > 0, p.ToString());
                var components = p.GetProperty("Components").EnumerateArray().ToList();
                var categories = components.Select(c => c.GetProperty("Category").GetString()).ToHashSet();
                // fp32 on the CPU: no mixed-precision gradient moves; every other category is measured.
                foreach (var c in new[] { "GEMMs", "attention", "norms", "elementwise", "optimizer", "other", "host/idle" }) Assert.Contains(c, categories);
                Assert.DoesNotContain("copies", categories);
                // Two blocks: q, k, v, o and the two FFN layers in each, plus the head's two layers.
                int gemmCount = components.Where(c => c.GetProperty("Category").GetString() == "GEMMs").Sum(c => c.GetProperty("Count").GetInt32());
                Assert.Equal(2 * 6 + 2, gemmCount);
                Assert.All(components.Where(c => c.GetProperty("Category").GetString() is "GEMMs" or "norms" or "optimizer"),
                    c => Assert.True(c.GetProperty("MsEach").GetDouble() > 0, c.ToString()));
                // The categories add up to the device time (the remainder is 'other' by construction).
                double sum = components.Where(c => c.GetProperty("Category").GetString() is not ("host/idle" or "attention parts")).Sum(c => c.GetProperty("MsPerStep").GetDouble());
                // The linear mixer's attention broken into its parts (outside the sum): split + rotary, kernel, merge.
                var parts = components.Where(c => c.GetProperty("Category").GetString() == "attention parts").ToList();
                Assert.Equal(3, parts.Count);
                Assert.All(parts, c => Assert.True(c.GetProperty("MsEach").GetDouble() > 0 && c.GetProperty("Count").GetInt32() == 2, c.ToString()));
                Assert.Contains(parts, c => c.GetProperty("What").GetString()!.StartsWith("LinearMixer: head split of q, k, v + rotary on q and k", StringComparison.Ordinal));
                Assert.Equal(p.GetProperty("DeviceMsPerStep").GetDouble(), sum, 6);
            }
            var md = File.ReadAllText(Path.Combine(dir, "training-profile.md"));
            Assert.Contains("bench profile --layers 2", md);
            Assert.Contains("test machine", md);
            Assert.Contains("| GEMMs |", md);
            Assert.Contains("### linear_relu, T = 32, B = 2", md);
            Assert.Contains("linear_relu", log.ToString());
        }
        finally { Directory.Delete(dir, true); }
    }
}

using System.IO.Compression;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Persistence;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>
/// Load errors reach the caller as the library's own message: through a plain <c>mlContext.Model.Load</c> (not a bare
/// TargetInvocationException), and a device problem as a device problem (not "the file is damaged").
/// </summary>
public sealed class ModelLoadErrorTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-loaderr-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string SaveTinyModel(string name)
    {
        var ml = new MLContext(seed: 1);
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data);
        var path = Path.Combine(_dir, name);
        ml.Model.Save(model, data.Schema, path);
        return path;
    }

    /// <summary>Replaces the 'Weights' entry (ours) with its first half: a valid zip whose weights cannot be read.</summary>
    private static void CutWeights(string path)
    {
        using var zip = ZipFile.Open(path, ZipArchiveMode.Update);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith("Weights", StringComparison.Ordinal));
        byte[] data;
        using (var s = entry.Open())
        using (var m = new MemoryStream()) { s.CopyTo(m); data = m.ToArray(); }
        var name = entry.FullName;
        entry.Delete();
        using var w = zip.CreateEntry(name).Open();
        w.Write(data.AsSpan(0, data.Length / 2));
    }

    [Fact]
    public void PlainModelLoadOfDamagedWeightsGivesTheLibrarysMessage()
    {
        var path = SaveTinyModel("cut.zip");
        CutWeights(path);
        var ml = new MLContext();
        LinearAttentionModel.Register(ml);
        var plain = Assert.ThrowsAny<Exception>(() => ml.Model.Load(path, out _));
        output.WriteLine(plain.Message);
        var e = Assert.IsType<ModelFormatException>(plain);
        Assert.Contains("ML.LinearAttention model", e.Message);
        Assert.Contains("save the model again", e.Message);

        var named = Assert.Throws<ModelFormatException>(() => LinearAttentionModel.Load(new MLContext(), path, out _));
        Assert.Contains(path, named.Message);
    }

    [Fact]
    public void LoadingForAnUnavailableGpuNamesTheDeviceNotTheFile()
    {
        var path = SaveTinyModel("model.zip");
        // No machine has 64 GPUs: on a CPU-only machine CUDA is missing, on a GPU machine the index is out of range.
        var ml = new MLContext { GpuDeviceId = 64, FallbackToCpu = false };
        var e = Assert.Throws<DeviceUnavailableException>(() => LinearAttentionModel.Load(ml, path, out _));
        output.WriteLine(e.Message);
        Assert.Contains("GpuDeviceId", e.Message);
        Assert.Contains(path, e.Message);
        Assert.DoesNotContain("damaged", e.Message);
        Assert.DoesNotContain("save the model again", e.Message);

        LinearAttentionModel.Register(ml);
        Assert.IsType<DeviceUnavailableException>(Assert.ThrowsAny<Exception>(() => ml.Model.Load(path, out _)));
    }
}

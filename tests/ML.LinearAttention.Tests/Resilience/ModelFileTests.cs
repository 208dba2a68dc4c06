using System.IO.Compression;
using System.Text;
using Microsoft.ML.LinearAttention.Estimators;

using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>Model files that cannot be used give errors naming the problem and the fix.</summary>
public sealed class ModelFileTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-modelfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string SaveTinyModel()
    {
        var ml = new MLContext(seed: 1);
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data);
        var path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, data.Schema, path);
        return path;
    }

    private static ModelFormatException LoadFails(string path)
    {
        var e = Assert.Throws<ModelFormatException>(() => LinearAttentionModel.Load(new MLContext(), path, out _));
        Assert.Contains(Path.GetFileName(path), e.Message);
        return e;
    }

    [Fact]
    public void MissingDamagedAndForeignFilesAreNamedWithTheFix()
    {
        var missing = Assert.Throws<FileNotFoundException>(() => LinearAttentionModel.Load(new MLContext(), Path.Combine(_dir, "nope.zip"), out _));
        Assert.Contains("does not exist", missing.Message);

        var random = Path.Combine(_dir, "random.zip");
        File.WriteAllBytes(random, Enumerable.Range(0, 4096).Select(i => (byte)(i * 31 % 251)).ToArray());
        Assert.Contains("not a zip archive", LoadFails(random).Message);

        var foreign = Path.Combine(_dir, "foreign.zip");
        using (var zip = ZipFile.Open(foreign, ZipArchiveMode.Create))
        using (var w = new StreamWriter(zip.CreateEntry("readme.txt").Open())) w.Write("not a model");
        var f = LoadFails(foreign);
        Assert.Contains("not an ML.NET model", f.Message);
        Assert.Contains("readme.txt", f.Message);

        var model = SaveTinyModel();
        var bytes = File.ReadAllBytes(model);
        var truncated = Path.Combine(_dir, "truncated.zip");
        File.WriteAllBytes(truncated, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        Assert.Contains("save the model again", LoadFails(truncated).Message);

        // Bytes flipped inside the weights entry: the archive opens, the entry's data does not check out.
        var flipped = Path.Combine(_dir, "flipped.zip");
        var copy = (byte[])bytes.Clone();
        for (int i = copy.Length / 3; i < copy.Length / 3 + 64; i++) copy[i] ^= 0x5A;
        File.WriteAllBytes(flipped, copy);
        var damaged = LoadFails(flipped);
        output.WriteLine(damaged.Message);
        Assert.Contains("damaged", damaged.Message);
    }

    [Fact]
    public void AModelSavedByANewerFormatAsksForANewerPackage()
    {
        var path = SaveTinyModel();
        // Raise the format versions in our component's ML.NET header (signature "LINATTNT", then written and readable versions).
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            var entry = zip.Entries.Single(e => ReadAll(e).AsSpan().IndexOf("LINATTNT"u8) >= 0);
            var data = ReadAll(entry);
            int at = data.AsSpan().IndexOf("LINATTNT"u8) + 8;
            Assert.Equal(LinearAttentionTransformer.FormatVersion, BitConverter.ToUInt32(data, at));     // written
            Assert.Equal(LinearAttentionTransformer.FormatVersion, BitConverter.ToUInt32(data, at + 4)); // readable by
            BitConverter.TryWriteBytes(data.AsSpan(at), 0x00020001u);
            BitConverter.TryWriteBytes(data.AsSpan(at + 4), 0x00020001u);
            var name = entry.FullName;
            entry.Delete();
            using var s = zip.CreateEntry(name).Open();
            s.Write(data);
        }
        var e = LoadFails(path);
        output.WriteLine(e.Message);
        Assert.Contains("newer ML.LinearAttention", e.Message);
        Assert.Contains("0x00020001", e.Message);
        Assert.Contains("Update the ML.LinearAttention package", e.Message);
    }

    private static byte[] ReadAll(ZipArchiveEntry e)
    {
        using var s = e.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }
}

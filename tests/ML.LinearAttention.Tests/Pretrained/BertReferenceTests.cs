using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

public class BertReferenceTests
{
    [Fact]
    public void PaddingDoesNotChangeRealTokenStates()
    {
        Torch.Seed();
        using var _ = torch.no_grad();
        using var model = new BertReference(TinyBert.Checkpoint());
        var ids = tensor(new long[] { 2, 7, 9, 10, 5, 11, 3 }).view(1, 7);
        using var alone = model.Forward(ids, ones_like(ids));

        // The same row padded to 11 next to a longer row, plus token type 1 for the second row.
        var batch = tensor(new long[] { 2, 7, 9, 10, 5, 11, 3, 0, 0, 0, 0, 2, 6, 8, 13, 14, 16, 18, 19, 20, 15, 3 }).view(2, 11);
        var mask = batch.ne(0).to(ScalarType.Int64);
        var types = zeros_like(batch);
        types[1] = tensor(1L);
        using var padded = model.Forward(batch, mask, types);

        Assert.Equal(new long[] { 2, 11, TinyBert.Config.HiddenSize }, padded.shape);
        Assert.True(alone[0].allclose(padded[0, ..7], rtol: 1e-5, atol: 1e-5), "padded keys leak into real tokens");
        using var pooledAlone = BertReference.MeanPool(alone, ones_like(ids));
        using var pooledPadded = BertReference.MeanPool(padded, mask);
        Assert.True(pooledAlone[0].allclose(pooledPadded[0], rtol: 1e-5, atol: 1e-5), "mean pooling counts padded positions");
    }

    [Fact]
    public void TooLongOrOutOfVocabularyInputsFailClearly()
    {
        using var model = new BertReference(TinyBert.Checkpoint());
        var tooLong = zeros(1, TinyBert.Config.MaxPositions + 1, dtype: ScalarType.Int64);
        Assert.Contains("positions", Assert.Throws<ArgumentException>(() => model.Forward(tooLong, ones_like(tooLong))).Message);
        var oov = tensor(new long[] { 2, 99, 3 }).view(1, 3);
        Assert.Contains("[0, 24)", Assert.Throws<ArgumentException>(() => model.Forward(oov, ones_like(oov))).Message);
    }

    [Fact]
    public void WordPieceAddsSpecialsTruncatesAndPads()
    {
        var wp = BertWordPiece.Create(TinyBert.Checkpoint());
        var batch = wp.Encode(new[] { "The cats sat", "A dog is very very very good and not bad", "" }, maxLength: 8);
        Assert.Equal((3, 8), (batch.BatchSize, batch.Length));
        // "the cats sat" → the cat ##s sat (lower-cased, WordPiece split)
        Assert.Equal(new long[] { 2, 5, 7, 12, 9, 3, 0, 0 }, batch.InputIds[..8]);
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 0, 0 }, batch.AttentionMask[..8]);
        Assert.Equal(3, batch.InputIds[15]);               // truncated row still ends with [SEP]
        Assert.Equal(new long[] { 2, 3, 0, 0, 0, 0, 0, 0 }, batch.InputIds[16..]);
    }
}

using Microsoft.ML.LinearAttention.Tokenization;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class TokenizerTests
{
    [Fact]
    public void EmbeddedVocabularyWorksOfflineWithBertSpecialTokens()
    {
        var tok = TextTokenizer.Create(null);
        Assert.Equal(DefaultVocabulary.Size, tok.VocabularySize);
        Assert.Equal((0, 101, 102), (tok.PadId, tok.ClsId, tok.SepId));
        var enc = tok.Encode(new[] { "Hello World".AsMemory(), "again".AsMemory() }, 4096);
        Assert.Equal(new[] { 101, 7592, 2088, 102, 2153, 102 }, enc.Ids);
        Assert.Equal(new[] { 0, 0, 0, 0, 1, 1 }, enc.Segments);
        Assert.Equal(0, enc.TruncatedTokens);
    }

    [Fact]
    public void TruncationCutsTheLongestTextFirstAndCounts()
    {
        var tok = TextTokenizer.Create(null);
        var title = "printer broken";
        var body = string.Join(" ", Enumerable.Repeat("the printer does not print", 20));
        var enc = tok.Encode(new[] { title.AsMemory(), body.AsMemory() }, 16);
        Assert.Equal(16, enc.Ids.Length);
        Assert.Equal(tok.EncodePiece(title), enc.Ids.Skip(1).Take(2));   // the short title survives whole
        Assert.Equal(100 + 2 + 3 - 16, enc.TruncatedTokens);
    }

    [Fact]
    public void TokenizerRoundTripsThroughItsBinaryForm()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s" });
            var tok = TextTokenizer.Create(new TokenizerOptions { VocabularyFile = path });
            Assert.Equal(8, tok.VocabularySize);
            using var ms = new MemoryStream();
            tok.Write(new BinaryWriter(ms));
            ms.Position = 0;
            var back = TextTokenizer.Read(new BinaryReader(ms));
            Assert.Equal(new[] { 2, 5, 6, 7, 3 }, back.Encode(new[] { "hello worlds".AsMemory() }, 64).Ids);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void BpeAndTiktokenNeedTheirFiles()
    {
        var bpe = Assert.Throws<ArgumentException>(() => TextTokenizer.Create(new TokenizerOptions { Kind = TokenizerKind.Bpe }));
        Assert.Contains("MergesFile", bpe.Message);
        var tik = Assert.Throws<ArgumentException>(() => TextTokenizer.Create(new TokenizerOptions { Kind = TokenizerKind.Tiktoken }));
        Assert.Contains(".tiktoken", tik.Message);
        Assert.Throws<FileNotFoundException>(() => TextTokenizer.Create(new TokenizerOptions { VocabularyFile = "/no/such/vocab.txt" }));
    }
}

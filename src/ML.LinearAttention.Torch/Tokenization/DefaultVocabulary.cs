using System.IO.Compression;

namespace Microsoft.ML.LinearAttention.Tokenization;

/// <summary>
/// The embedded default WordPiece vocabulary: bert-base-uncased (30,522 tokens, Apache-2.0), so text estimators work
/// offline with no file to ship. Provenance in Tokenization/Resources/NOTICE.md.
/// </summary>
public static class DefaultVocabulary
{
    internal const string ResourceName = "ML.LinearAttention.Tokenization.bert-base-uncased-vocab.txt.gz";

    /// <summary>Number of tokens in the embedded vocabulary.</summary>
    public const int Size = 30522;

    private static readonly Lazy<byte[]> Bytes = new(ReadBytes);

    /// <summary>The vocabulary file's bytes (UTF-8, one token per line, LF).</summary>
    public static ReadOnlyMemory<byte> Get() => Bytes.Value;

    private static byte[] ReadBytes()
    {
        using var stream = typeof(DefaultVocabulary).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"The embedded vocabulary '{ResourceName}' is missing from {typeof(DefaultVocabulary).Assembly.FullName}; the assembly is damaged or was trimmed.");
        using var gz = new GZipStream(stream, CompressionMode.Decompress);
        using var copy = new MemoryStream();
        gz.CopyTo(copy);
        return copy.ToArray();
    }
}

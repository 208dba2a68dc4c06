namespace Microsoft.ML.LinearAttention.Tokenization;

/// <summary>Which Microsoft.ML.Tokenizers algorithm turns text into token ids.</summary>
public enum TokenizerKind
{
    /// <summary>BERT WordPiece (<c>BertTokenizer</c>): the embedded bert-base-uncased vocabulary or a vocab.txt file.</summary>
    WordPiece,
    /// <summary>Byte-pair encoding (<c>BpeTokenizer</c>) from a vocab.json and a merges.txt file.</summary>
    Bpe,
    /// <summary>Tiktoken (<c>TiktokenTokenizer</c>) from a .tiktoken file and the model name that fixes its regex.</summary>
    Tiktoken,
}

/// <summary>How text columns are tokenized. The vocabulary files are read at Fit and stored inside the saved model.</summary>
public sealed class TokenizerOptions
{
    /// <summary>Tokenizer algorithm; WordPiece by default.</summary>
    public TokenizerKind Kind { get; set; } = TokenizerKind.WordPiece;

    /// <summary>
    /// WordPiece: a vocab.txt (one token per line); null = the embedded bert-base-uncased vocabulary (30,522 tokens).
    /// Bpe: the vocab.json. Tiktoken: the .tiktoken file. Required for Bpe and Tiktoken.
    /// </summary>
    public string? VocabularyFile { get; set; }

    /// <summary>Bpe only: the merges.txt file.</summary>
    public string? MergesFile { get; set; }

    /// <summary>Tiktoken only: the model whose pre-tokenizer regex and special tokens to use (e.g. "gpt-4o", "gpt-4").</summary>
    public string TiktokenModel { get; set; } = "gpt-4";

    /// <summary>WordPiece only: lower-case text first (true for uncased vocabularies such as the default).</summary>
    public bool LowerCase { get; set; } = true;
}

using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.LinearAttention.Tokenization;

/// <summary>Token ids of one row: [CLS] text₁ [SEP] text₂ [SEP] …, segment i for text i.</summary>
/// <param name="Ids">Token ids, CLS first.</param>
/// <param name="Segments">Segment id of every token (0 for CLS and the first text).</param>
/// <param name="TruncatedTokens">Tokens dropped to fit the length limit (0 when nothing was cut).</param>
public readonly record struct EncodedText(int[] Ids, int[] Segments, int TruncatedTokens);

/// <summary>
/// A Microsoft.ML.Tokenizers tokenizer plus the special tokens the encoder needs, built from bytes so that it can be
/// stored inside a saved model and rebuilt in another process without the original files.
/// </summary>
public sealed class TextTokenizer
{
    private readonly Tokenizer _tokenizer;
    private readonly byte[] _vocabulary;
    private readonly byte[]? _merges;
    private readonly bool _isDefaultVocabulary;

    private TextTokenizer(TokenizerKind kind, byte[] vocabulary, byte[]? merges, bool lowerCase, string tiktokenModel, bool isDefault)
    {
        Kind = kind;
        _vocabulary = vocabulary;
        _merges = merges;
        LowerCase = lowerCase;
        TiktokenModel = tiktokenModel;
        _isDefaultVocabulary = isDefault;
        switch (kind)
        {
            case TokenizerKind.WordPiece:
                var bert = BertTokenizer.Create(new MemoryStream(vocabulary, writable: false),
                    new BertOptions { LowerCaseBeforeTokenization = lowerCase });
                _tokenizer = bert;
                ClsId = bert.ClassificationTokenId;
                SepId = bert.SeparatorTokenId;
                PadId = bert.PaddingTokenId;
                VocabularySize = Math.Max(CountLines(vocabulary), Math.Max(ClsId, Math.Max(SepId, PadId)) + 1);
                break;
            case TokenizerKind.Bpe:
                var bpe = BpeTokenizer.Create(new MemoryStream(vocabulary, writable: false), new MemoryStream(merges!, writable: false));
                _tokenizer = bpe;
                SetAppendedSpecials(bpe.Vocabulary.Values.DefaultIfEmpty(-1).Max() + 1);
                break;
            case TokenizerKind.Tiktoken:
                var tik = TiktokenTokenizer.CreateForModel(tiktokenModel, new MemoryStream(vocabulary, writable: false));
                _tokenizer = tik;
                int max = MaxTiktokenRank(vocabulary);
                if (tik.SpecialTokens is { Count: > 0 } sp) max = Math.Max(max, sp.Values.Max());
                SetAppendedSpecials(max + 1);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown tokenizer kind.");
        }
    }

    // BPE and Tiktoken vocabularies have no CLS/SEP/PAD of their own: three ids are appended after the vocabulary.
    private void SetAppendedSpecials(int baseSize)
    {
        PadId = baseSize;
        ClsId = baseSize + 1;
        SepId = baseSize + 2;
        VocabularySize = baseSize + 3;
    }

    /// <summary>The algorithm.</summary>
    public TokenizerKind Kind { get; }
    /// <summary>WordPiece lower-casing.</summary>
    public bool LowerCase { get; }
    /// <summary>Tiktoken model name.</summary>
    public string TiktokenModel { get; }
    /// <summary>Rows of the token embedding table (vocabulary plus any appended special tokens).</summary>
    public int VocabularySize { get; private set; }
    /// <summary>Id of the padding token.</summary>
    public int PadId { get; private set; }
    /// <summary>Id of the classification token that starts every row.</summary>
    public int ClsId { get; private set; }
    /// <summary>Id of the separator that ends every text.</summary>
    public int SepId { get; private set; }
    /// <summary>The underlying Microsoft.ML.Tokenizers tokenizer.</summary>
    public Tokenizer Inner => _tokenizer;

    /// <summary>The vocabulary file's bytes and, for BPE, the merges file's (written beside an exported ONNX graph).</summary>
    internal (byte[] Vocabulary, byte[]? Merges) Files => (_vocabulary, _merges);

    /// <summary>Builds the tokenizer described by <paramref name="options"/>, reading its files now.</summary>
    public static TextTokenizer Create(TokenizerOptions? options)
    {
        options ??= new TokenizerOptions();
        switch (options.Kind)
        {
            case TokenizerKind.WordPiece:
                if (options.VocabularyFile is null)
                    return new TextTokenizer(TokenizerKind.WordPiece, DefaultVocabulary.Get().ToArray(), null, options.LowerCase, options.TiktokenModel, isDefault: true);
                return new TextTokenizer(TokenizerKind.WordPiece, ReadFile(options.VocabularyFile, "WordPiece vocab.txt"), null, options.LowerCase, options.TiktokenModel, false);
            case TokenizerKind.Bpe:
                if (options.VocabularyFile is null || options.MergesFile is null)
                    throw new ArgumentException("A BPE tokenizer needs TokenizerOptions.VocabularyFile (vocab.json) and TokenizerOptions.MergesFile (merges.txt).", nameof(options));
                return new TextTokenizer(TokenizerKind.Bpe, ReadFile(options.VocabularyFile, "BPE vocab.json"), ReadFile(options.MergesFile, "BPE merges.txt"), false, options.TiktokenModel, false);
            case TokenizerKind.Tiktoken:
                if (options.VocabularyFile is null)
                    throw new ArgumentException("A Tiktoken tokenizer needs TokenizerOptions.VocabularyFile (a .tiktoken file, e.g. cl100k_base.tiktoken) and TokenizerOptions.TiktokenModel.", nameof(options));
                return new TextTokenizer(TokenizerKind.Tiktoken, ReadFile(options.VocabularyFile, ".tiktoken"), null, false, options.TiktokenModel, false);
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Unknown tokenizer kind.");
        }
    }

    /// <summary>
    /// A WordPiece tokenizer over vocab.txt bytes (e.g. a pretrained checkpoint's vocabulary). A vocabulary identical to
    /// the embedded bert-base-uncased one is stored in saved models as a flag; any other is stored whole.
    /// </summary>
    public static TextTokenizer FromWordPieceVocabulary(ReadOnlySpan<byte> vocabulary, bool lowerCase = true)
    {
        if (vocabulary.IsEmpty) throw new ArgumentException("The WordPiece vocabulary is empty.", nameof(vocabulary));
        bool isDefault = vocabulary.SequenceEqual(DefaultVocabulary.Get().Span);
        return new TextTokenizer(TokenizerKind.WordPiece, isDefault ? DefaultVocabulary.Get().ToArray() : vocabulary.ToArray(), null, lowerCase,
            new TokenizerOptions().TiktokenModel, isDefault);
    }

    private static byte[] ReadFile(string path, string what)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"The tokenizer's {what} file '{path}' does not exist; set TokenizerOptions to an existing file.", path);
        return File.ReadAllBytes(path);
    }

    // A .tiktoken file is "base64-token rank" per line; TiktokenTokenizer keeps its vocabulary internal.
    private static int MaxTiktokenRank(byte[] bytes)
    {
        int max = -1;
        foreach (var line in System.Text.Encoding.UTF8.GetString(bytes).Split('\n'))
        {
            int space = line.LastIndexOf(' ');
            if (space > 0 && int.TryParse(line.AsSpan(space + 1).Trim(), out int rank)) max = Math.Max(max, rank);
        }
        return max;
    }

    private static int CountLines(byte[] bytes)
    {
        int lines = 0;
        for (int i = 0; i < bytes.Length; i++) if (bytes[i] == (byte)'\n') lines++;
        if (bytes.Length > 0 && bytes[^1] != (byte)'\n') lines++;
        return lines;
    }

    /// <summary>Token ids of one text, without special tokens.</summary>
    public IReadOnlyList<int> EncodePiece(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty) return Array.Empty<int>();
        return _tokenizer is BertTokenizer bert
            ? bert.EncodeToIds(text, addSpecialTokens: false)
            : _tokenizer.EncodeToIds(text);
    }

    /// <summary>
    /// Encodes several texts of one row as [CLS] t₁ [SEP] t₂ [SEP] …, at most <paramref name="maxLength"/> tokens.
    /// When too long, the longest text loses tokens first (from its end), so short fields such as titles survive.
    /// </summary>
    public EncodedText Encode(IReadOnlyList<ReadOnlyMemory<char>> texts, int maxLength)
    {
        int n = texts.Count;
        if (maxLength < n + 2)
            throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, $"MaxSequenceLength must leave room for [CLS] and {n} separator(s); use at least {n + 2}.");
        var pieces = new IReadOnlyList<int>[n];
        var keep = new int[n];
        long total = 0;
        for (int i = 0; i < n; i++)
        {
            pieces[i] = EncodePiece(texts[i].Span);
            keep[i] = pieces[i].Count;
            total += keep[i];
        }
        int budget = maxLength - 1 - n;
        int truncated = 0;
        if (total > budget)
        {
            truncated = (int)Math.Min(int.MaxValue, total - budget);   // texts of more than 2³¹ tokens in all: the count saturates
            long excess = total - budget;
            while (excess > 0)
            {
                int longest = 0;
                for (int i = 1; i < n; i++) if (keep[i] > keep[longest]) longest = i;
                int second = 0;
                for (int i = 0; i < n; i++) if (i != longest) second = Math.Max(second, keep[i]);
                int cut = (int)Math.Min(excess, Math.Max(1, keep[longest] - second));
                keep[longest] -= cut;
                excess -= cut;
            }
        }
        int length = 1 + n + keep.Sum();
        var ids = new int[length];
        var segments = new int[length];
        int p = 0;
        ids[p++] = ClsId;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < keep[i]; j++) { segments[p] = i; ids[p++] = pieces[i][j]; }
            segments[p] = i;
            ids[p++] = SepId;
        }
        return new EncodedText(ids, segments, truncated);
    }

    /// <summary>Writes everything needed to rebuild this tokenizer (the default vocabulary is written as a flag).</summary>
    public void Write(BinaryWriter writer)
    {
        writer.Write((int)Kind);
        writer.Write(LowerCase);
        writer.Write(TiktokenModel);
        writer.Write(_isDefaultVocabulary);
        if (!_isDefaultVocabulary) WriteBytes(writer, _vocabulary);
        writer.Write(_merges is not null);
        if (_merges is not null) WriteBytes(writer, _merges);
    }

    /// <summary>Rebuilds a tokenizer written by <see cref="Write"/>.</summary>
    public static TextTokenizer Read(BinaryReader reader)
    {
        var kind = (TokenizerKind)reader.ReadInt32();
        bool lower = reader.ReadBoolean();
        string model = reader.ReadString();
        bool isDefault = reader.ReadBoolean();
        byte[] vocab = isDefault ? DefaultVocabulary.Get().ToArray() : ReadBytes(reader);
        byte[]? merges = reader.ReadBoolean() ? ReadBytes(reader) : null;
        return new TextTokenizer(kind, vocab, merges, lower, model, isDefault);
    }

    private static void WriteBytes(BinaryWriter w, byte[] b) { w.Write(b.Length); w.Write(b); }

    private static byte[] ReadBytes(BinaryReader r)
    {
        int n = r.ReadInt32();
        if (n < 0) throw new InvalidDataException("Corrupt tokenizer block in the model.");
        return r.ReadBytes(n);
    }

    /// <summary>A short description for logs.</summary>
    public override string ToString()
        => $"{Kind} ({(_isDefaultVocabulary ? "embedded bert-base-uncased" : $"{_vocabulary.Length:N0}-byte vocabulary")}, {VocabularySize} ids)";
}

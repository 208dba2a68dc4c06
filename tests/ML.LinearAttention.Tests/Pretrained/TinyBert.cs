using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Pretrained;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

/// <summary>A tiny random BERT (weights under Hugging Face names, Linear [out, in]) and writers for the formats it is imported from.</summary>
internal static class TinyBert
{
    public static readonly BertConfig Config = new()
    {
        VocabSize = 24, HiddenSize = 8, NumLayers = 2, NumHeads = 2, IntermediateSize = 12, MaxPositions = 16, TypeVocabSize = 2,
    };

    public static readonly string[] Vocabulary =
        new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat", "##s", "is", "good", "bad", ".", ",", "and", "not", "very", "movie", "it", "was" };

    /// <summary>Weights with values exactly representable in float16 and bfloat16 (multiples of 1/64 in [-1, 1]), so every dtype round-trips exactly.</summary>
    public static Dictionary<string, WeightTensor> Weights(int seed = 7)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, WeightTensor>();
        foreach (var (name, shape) in BertNames.ExpectedShapes(Config))
        {
            long n = shape.Aggregate(1L, (a, d) => a * d);
            var data = new float[n];
            bool isLnWeight = name.Contains("LayerNorm.weight");
            for (long i = 0; i < n; i++) data[i] = isLnWeight ? 1f + rng.Next(-8, 9) / 64f : rng.Next(-64, 65) / 64f;
            result[name] = new WeightTensor(name, shape, data);
        }
        return result;
    }

    public static BertCheckpoint Checkpoint(int seed = 7) => new(Config, Weights(seed).Values, Vocabulary, "tiny");

    /// <summary>Writes a safetensors file: every tensor as (name, dtype, shape, float values) converted to dtype.</summary>
    public static void WriteSafeTensors(string path, IEnumerable<(string Name, string DType, long[] Shape, float[] Data)> tensors)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        var data = new MemoryStream();
        foreach (var (name, dtype, shape, values) in tensors)
        {
            long begin = data.Length;
            foreach (var v in values) data.Write(Encode(dtype, v));
            header[name] = new Dictionary<string, object> { ["dtype"] = dtype, ["shape"] = shape, ["data_offsets"] = new[] { begin, data.Length } };
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var f = File.Create(path);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
        f.Write(len);
        f.Write(json);
        data.Position = 0;
        data.CopyTo(f);
    }

    private static byte[] Encode(string dtype, float v)
    {
        var b = new byte[dtype switch { "F32" or "I32" => 4, "F16" or "BF16" => 2, "F64" or "I64" => 8, _ => 1 }];
        switch (dtype)
        {
            case "F32": BinaryPrimitives.WriteSingleLittleEndian(b, v); break;
            case "F16": BinaryPrimitives.WriteHalfLittleEndian(b, (Half)v); break;
            case "BF16": BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)(BitConverter.SingleToInt32Bits(v) >> 16)); break;
            case "F64": BinaryPrimitives.WriteDoubleLittleEndian(b, v); break;
            case "I64": BinaryPrimitives.WriteInt64LittleEndian(b, (long)v); break;
            case "I32": BinaryPrimitives.WriteInt32LittleEndian(b, (int)v); break;
            default: b[0] = (byte)(sbyte)v; break;
        }
        return b;
    }

    /// <summary>A Hugging Face folder (config.json, model.safetensors with "bert." names and mixed dtypes, vocab.txt).</summary>
    public static string WriteHuggingFaceFolder(string folder, Func<string, string>? dtypeOf = null, Func<string, bool>? include = null,
        bool writeVocabulary = true, string modelType = "bert")
    {
        Directory.CreateDirectory(folder);
        var c = Config;
        File.WriteAllText(Path.Combine(folder, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "BertModel" }, ["model_type"] = modelType, ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.HiddenSize, ["num_hidden_layers"] = c.NumLayers, ["num_attention_heads"] = c.NumHeads,
            ["intermediate_size"] = c.IntermediateSize, ["max_position_embeddings"] = c.MaxPositions,
            ["type_vocab_size"] = c.TypeVocabSize, ["layer_norm_eps"] = 1e-12, ["hidden_act"] = "gelu",
            ["position_embedding_type"] = "absolute",
        }));
        dtypeOf ??= name => (name.Length % 3) switch { 0 => "F16", 1 => "BF16", _ => "F32" };
        var tensors = Weights().Values
            .Where(w => include?.Invoke(w.Name) ?? true)
            .Select(w => ("bert." + w.Name, dtypeOf(w.Name), w.Shape, w.Data))
            .Append(("bert.embeddings.position_ids", "I64", new long[] { 1, c.MaxPositions }, Enumerable.Range(0, c.MaxPositions).Select(i => (float)i).ToArray()))
            .Append(("cls.predictions.bias", "F32", new long[] { c.VocabSize }, new float[c.VocabSize]));
        WriteSafeTensors(Path.Combine(folder, "model.safetensors"), tensors);
        if (writeVocabulary) File.WriteAllText(Path.Combine(folder, "vocab.txt"), string.Join("\n", Vocabulary) + "\n", Encoding.UTF8);
        return folder;
    }

    public static string TempFolder(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "ml-linear-attention-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}

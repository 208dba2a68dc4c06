using System.Buffers.Binary;
using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>One tensor entry of a safetensors header: dtype, shape and byte range inside the data section.</summary>
public sealed record SafeTensorEntry(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>
/// Reader of the safetensors format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
/// {dtype, shape, data_offsets [begin, end)} relative to the data section that follows, and the raw little-endian data.
/// F32, F16, BF16 and F64 tensors are read as float32.
/// </summary>
public static class SafeTensors
{
    /// <summary>dtypes that <see cref="Read"/> converts to float32.</summary>
    public static readonly IReadOnlyList<string> FloatDTypes = new[] { "F32", "F16", "BF16", "F64" };

    private const long MaxHeaderBytes = 100L << 20;

    /// <summary>The header entries of a .safetensors file (the data is not read).</summary>
    public static IReadOnlyDictionary<string, SafeTensorEntry> ReadHeader(string path) => ReadHeader(path, out _);

    /// <summary>Reads one tensor as float32.</summary>
    /// <exception cref="NotSupportedException">The tensor's dtype is not one of <see cref="FloatDTypes"/>.</exception>
    public static WeightTensor Read(string path, SafeTensorEntry entry, string? name = null)
    {
        ReadHeader(path, out long dataStart);
        return ReadAt(path, entry, dataStart, name);
    }

    /// <summary>Reads the tensors <paramref name="include"/> selects (all when null) as float32.</summary>
    public static IReadOnlyList<WeightTensor> ReadAll(string path, Func<string, bool>? include = null)
    {
        var header = ReadHeader(path, out long dataStart);
        return header.Values.Where(e => include?.Invoke(e.Name) ?? true).Select(e => ReadAt(path, e, dataStart, null)).ToList();
    }

    internal static WeightTensor ReadAt(string path, SafeTensorEntry e, long dataStart, string? name)
    {
        int size = e.DType switch
        {
            "F32" => 4,
            "F16" or "BF16" => 2,
            "F64" => 8,
            _ => throw new NotSupportedException($"{path}: tensor '{e.Name}' has dtype {e.DType}; only {string.Join(", ", FloatDTypes)} weights can be imported."),
        };
        long count = e.Shape.Aggregate(1L, (a, d) => a * d);
        if (e.End - e.Begin != count * size)
            throw new InvalidDataException($"{path}: tensor '{e.Name}' spans {e.End - e.Begin} bytes but {e.DType} [{string.Join(", ", e.Shape)}] needs {count * size}.");
        if (count * size > Array.MaxLength)
            throw new NotSupportedException($"{path}: tensor '{e.Name}' ({count * size} bytes) is larger than one .NET array.");
        var raw = new byte[count * size];
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
        {
            if (dataStart + e.End > fs.Length)
                throw new InvalidDataException($"{path}: tensor '{e.Name}' ends at byte {dataStart + e.End} but the file has {fs.Length} bytes (truncated download?).");
            fs.Position = dataStart + e.Begin;
            fs.ReadExactly(raw);
        }
        float[] data = e.DType switch
        {
            "F32" => FloatConversions.FromF32(raw),
            "F16" => FloatConversions.FromF16(raw),
            "BF16" => FloatConversions.FromBF16(raw),
            _ => FloatConversions.FromF64(raw),
        };
        return new WeightTensor(name ?? e.Name, e.Shape, data);
    }

    internal static IReadOnlyDictionary<string, SafeTensorEntry> ReadHeader(string path, out long dataStart)
    {
        BertCheckpoint.RequireFile(path, "safetensors");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        Span<byte> lenBytes = stackalloc byte[8];
        if (fs.Length < 8) throw new InvalidDataException($"{path}: {fs.Length} bytes is too short for a safetensors file.");
        fs.ReadExactly(lenBytes);
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (headerLen == 0 || headerLen > MaxHeaderBytes || (long)headerLen > fs.Length - 8)
            throw new InvalidDataException($"{path}: safetensors header length {headerLen} is invalid for a {fs.Length}-byte file: not a safetensors file, or truncated.");
        var json = new byte[headerLen];
        fs.ReadExactly(json);
        dataStart = 8 + (long)headerLen;

        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var dtype = p.Value.GetProperty("dtype").GetString() ?? "";
                var shape = p.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                    throw new InvalidDataException($"{path}: tensor '{p.Name}' has invalid data_offsets [{string.Join(", ", offsets)}].");
                entries[p.Name] = new SafeTensorEntry(p.Name, dtype, shape, offsets[0], offsets[1]);
            }
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: the safetensors JSON header is malformed ({ex.Message}).", ex);
        }
        return entries;
    }
}

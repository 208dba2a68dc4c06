using System.IO.Compression;
using System.Reflection;
using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>A model file that cannot be used: damaged, of another kind, or written by a newer format. The message says which and what to do.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : FormatException(message, inner);

/// <summary>
/// Loading a model file with errors that name the problem and the fix: missing file, not a zip archive, a zip that is
/// not an ML.NET model, a model saved by a newer ML.LinearAttention, or components this program cannot load.
/// </summary>
internal static class ModelFiles
{
    private static string LibraryVersion
        => (typeof(ModelFiles).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "?").Split('+')[0];

    /// <summary>Throws when the saved component is readable only by a newer format than <paramref name="current"/>.</summary>
    public static void CheckFormatVersion((uint Written, uint Readable) saved, uint current)
    {
        if (saved.Readable > current)
            throw new ModelFormatException(
                $"This model was saved by a newer ML.LinearAttention (model format 0x{saved.Written:X8}, which needs a reader of format 0x{saved.Readable:X8} " +
                $"or later); this ML.LinearAttention {LibraryVersion} reads formats up to 0x{current:X8}. Update the ML.LinearAttention package to the " +
                "version that saved the model (or newer), or save the model again with this version.");
    }

    /// <summary>Loads <paramref name="path"/> with <c>mlContext.Model.Load</c> after checking that it is an ML.NET model file.</summary>
    public static ITransformer Load(MLContext mlContext, string path, out DataViewSchema inputSchema)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        if (!File.Exists(full))
            throw new FileNotFoundException($"The model file '{full}' does not exist. Check the path, or save a model there with mlContext.Model.Save.", full);
        using var stream = File.OpenRead(full);
        return Load(mlContext, stream, $"'{full}'", out inputSchema);
    }

    /// <summary>Loads a model from a seekable <paramref name="stream"/>; <paramref name="name"/> names it in errors.</summary>
    public static ITransformer Load(MLContext mlContext, Stream stream, string name, out DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanSeek) throw new ArgumentException("The model stream must be seekable (copy it into a MemoryStream first).", nameof(stream));
        long start = stream.Position;
        CheckArchive(stream, name);
        stream.Position = start;
        try
        {
            return mlContext.Model.Load(stream, out inputSchema);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            for (var x = e; x is not null; x = x.InnerException)
            {
                if (x is ModelFormatException known) throw new ModelFormatException($"{name}: {known.Message}", known);
                if (x is DeviceUnavailableException device) throw new DeviceUnavailableException($"{name}: {device.Message}", device);
            }
            var cause = e;
            while (cause is TargetInvocationException or AggregateException && cause.InnerException is not null) cause = cause.InnerException;
            throw new ModelFormatException(
                $"{name} is a zip archive with ML.NET entries but could not be loaded: {cause.Message.Trim()} If the model uses components of other " +
                "libraries, reference them (and call their registration) before loading; otherwise the file is damaged: save the model again.", e);
        }
    }

    /// <summary>Checks that <paramref name="stream"/> is a readable zip archive holding an ML.NET model (every entry's CRC is verified).</summary>
    public static void CheckArchive(Stream stream, string name)
    {
        List<string> names;
        try
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            names = zip.Entries.Select(e => e.FullName).ToList();
            foreach (var entry in zip.Entries)
            {
                using var s = entry.Open();
                if (Crc32.Of(s) != entry.Crc32)
                    throw new InvalidDataException($"the checksum of entry '{entry.FullName}' does not match its data");
            }
        }
        catch (InvalidDataException e)
        {
            throw new ModelFormatException($"{name} is not a usable model file: it is not a zip archive, or a damaged one ({e.Message}). A model saved with " +
                                           "mlContext.Model.Save is a zip archive; save the model again, or check that the path names the model and not another file.", e);
        }
        if (!names.Any(n => n.EndsWith("Model.key", StringComparison.Ordinal)))
            throw new ModelFormatException($"{name} is a zip archive but not an ML.NET model (it holds {string.Join(", ", names.Take(8))}{(names.Count > 8 ? ", ..." : "")}; " +
                                           "an ML.NET model has Model.key entries). Check that the path names a model saved with mlContext.Model.Save.");
    }
}

/// <summary>CRC-32 (ISO-HDLC, as zip and PNG use it).</summary>
internal static class Crc32
{
    private static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    /// <summary>Continues a CRC over <paramref name="data"/> (start with 0).</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint c = ~crc;
        foreach (var b in data) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>CRC of a whole stream.</summary>
    public static uint Of(Stream stream)
    {
        var buffer = new byte[1 << 16];
        uint crc = 0;
        int n;
        while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) crc = Append(crc, buffer.AsSpan(0, n));
        return crc;
    }
}

namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>Writes files through a temporary name and a rename, so a crash or a cancel never leaves a partial file.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<string> writeTo)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            writeTo(temp);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, t => File.WriteAllBytes(t, bytes));
    public static void WriteAllText(string path, string text) => Write(path, t => File.WriteAllText(t, text));
}

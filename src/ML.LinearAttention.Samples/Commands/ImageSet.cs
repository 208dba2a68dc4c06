using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>One image: its full path, the path as the user wrote it (for output files), and its class (null when unlabelled).</summary>
public sealed class ImageInput
{
    public string ImagePath { get; set; } = "";
    public string Shown { get; set; } = "";
    public string Label { get; set; } = "";
}

/// <summary>
/// The images of `train`, `evaluate` and `predict`: a folder with a subfolder per class, a folder of images to score,
/// or a CSV/TSV naming each image's path (relative to the file's folder or --image-root) and class. Every file is
/// checked before anything is trained: it exists, can be read, and starts like an image; errors name the file and the fix.
/// </summary>
public static class ImageSet
{
    /// <summary>What the library decodes (ML.NET's MLImage): PNG, JPEG, BMP, GIF, WEBP.</summary>
    private static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp" };
    private const string Kinds = "PNG, JPEG, BMP, GIF or WEBP";

    /// <summary>A folder with one subfolder per class (DIR/cat/1.jpg, DIR/dog/2.png); files of other types are skipped.</summary>
    public static List<ImageInput> FromClassFolders(string folder, string option)
    {
        var dir = OpenFolder(folder, option);
        var classes = Directory.GetDirectories(dir).OrderBy(d => d, StringComparer.Ordinal).ToList();
        var loose = Images(dir, SearchOption.TopDirectoryOnly);
        if (classes.Count == 0)
            throw new ArgumentException(loose.Count == 0
                ? $"{option} '{dir}' is empty: it needs a subfolder per class holding that class's images ({dir}/cat/1.jpg, {dir}/dog/2.png)."
                : $"{option} '{dir}' holds {loose.Count:N0} image(s) but no class folders: put each class's images in a subfolder named after the class ({dir}/cat/1.jpg, {dir}/dog/2.png).");
        var rows = new List<ImageInput>();
        foreach (var c in classes)
        {
            var images = Images(c, SearchOption.AllDirectories);
            if (images.Count == 0)
                throw new ArgumentException($"The class folder '{c}' holds no image ({Kinds}); put its images in it, or remove the folder.");
            var name = Path.GetFileName(c);
            rows.AddRange(images.Select(f => new ImageInput { ImagePath = f, Shown = Path.GetRelativePath(dir, f), Label = name }));
        }
        if (classes.Count == 1)
            throw new ArgumentException($"{option} '{dir}' has one class folder ('{Path.GetFileName(classes[0])}'); a classifier needs at least two: add a subfolder per class.");
        CheckFiles(rows, $"under '{dir}'");
        return rows;
    }

    /// <summary>Every image under <paramref name="folder"/> (subfolders included), unlabelled: what `predict` scores.</summary>
    public static List<ImageInput> FromFolder(string folder, string option)
    {
        var dir = OpenFolder(folder, option);
        var rows = Images(dir, SearchOption.AllDirectories).Select(f => new ImageInput { ImagePath = f, Shown = Path.GetRelativePath(dir, f) }).ToList();
        if (rows.Count == 0) throw new ArgumentException($"{option} '{dir}' holds no image ({Kinds}, subfolders included).");
        CheckFiles(rows, $"under '{dir}'");
        return rows;
    }

    /// <summary>Rows of a CSV/TSV: the image path column (relative paths against <paramref name="root"/>) and the class column.</summary>
    public static List<ImageInput> FromTable(MLContext ml, TabularData data, string imageColumn, string? labelColumn, string? root)
    {
        var baseDir = Path.GetFullPath(root ?? Path.GetDirectoryName(data.Path)!);
        var columns = new List<(string, DataKind)> { (imageColumn, DataKind.String) };
        if (labelColumn is not null) columns.Add((labelColumn, DataKind.String));
        var view = data.Load(ml, columns);
        var rows = new List<ImageInput>();
        using (var cursor = view.GetRowCursor(view.Schema))
        {
            var path = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema[imageColumn]);
            var label = labelColumn is null ? null : cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema[labelColumn]);
            ReadOnlyMemory<char> p = default, l = default;
            while (cursor.MoveNext())
            {
                path(ref p);
                var shown = p.ToString().Trim();
                long row = rows.Count + 1;
                if (shown.Length == 0) throw new ArgumentException($"Row {row:N0} of '{data.Path}' has no image path in column '{imageColumn}'; fill it in or remove the row.");
                string cls = "";
                if (label is not null)
                {
                    label(ref l);
                    cls = l.ToString().Trim();
                    if (cls.Length == 0) throw new ArgumentException($"Row {row:N0} of '{data.Path}' ('{shown}') has no class in column '{labelColumn}'; fill it in or remove the row.");
                }
                rows.Add(new ImageInput { ImagePath = Path.GetFullPath(Path.Combine(baseDir, shown)), Shown = shown, Label = cls });
            }
        }
        if (rows.Count == 0) throw new ArgumentException($"'{data.Path}' has a header but no rows: it names no image.");
        var missing = rows.Select((r, i) => (Row: r, Index: i + 1)).Where(x => !File.Exists(x.Row.ImagePath)).ToList();
        if (missing.Count > 0)
        {
            var examples = string.Join(", ", missing.Take(3).Select(m => $"row {m.Index:N0}: '{m.Row.Shown}' (looked for {m.Row.ImagePath})"));
            throw new ArgumentException($"{missing.Count:N0} of {rows.Count:N0} image path(s) in column '{imageColumn}' of '{data.Path}' name no file: {examples}. " +
                                        $"Relative paths are read from {baseDir}; give --image-root DIR if the images lie elsewhere, or correct the paths.");
        }
        CheckFiles(rows, $"named by '{data.Path}'");
        return rows;
    }

    /// <summary>The classes in key order (sorted, as a folder listing), at least two.</summary>
    public static string[] Classes(IEnumerable<ImageInput> rows, string source)
    {
        var classes = rows.Select(r => r.Label).Distinct(StringComparer.Ordinal).OrderBy(c => c, StringComparer.Ordinal).ToArray();
        if (classes.Length < 2)
            throw new ArgumentException($"Every image of {source} is of class '{classes.FirstOrDefault()}'; a classifier needs at least two classes.");
        return classes;
    }

    /// <summary>
    /// The files that do not decode, found after the library failed on one (it names only the row): each is decoded in
    /// turn, which costs a pass over the images but only once something is already wrong.
    /// </summary>
    public static ArgumentException? Undecodable(IEnumerable<ImageInput> rows, Exception cause)
    {
        var bad = new List<string>();
        foreach (var r in rows)
        {
            try { using var image = MLImage.CreateFromFile(r.ImagePath); }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or NotSupportedException or UnauthorizedAccessException) { bad.Add(r.ImagePath); }
            if (bad.Count == 3) break;
        }
        return bad.Count == 0 ? null
            : new ArgumentException($"Image file(s) that cannot be decoded (damaged or incomplete): {string.Join(", ", bad)}. Replace or remove them ({cause.Message}).", cause);
    }

    private static string OpenFolder(string folder, string option)
    {
        var dir = Path.GetFullPath(folder);
        if (!Directory.Exists(dir))
            throw new ArgumentException(File.Exists(dir)
                ? $"{option} '{dir}' is a file; give a folder of images (or a CSV/TSV naming them with --data and --image)."
                : $"{option} '{dir}' does not exist.");
        return dir;
    }

    private static List<string> Images(string dir, SearchOption depth)
        => Directory.EnumerateFiles(dir, "*", depth).Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .OrderBy(f => f, StringComparer.Ordinal).ToList();

    /// <summary>Every file readable and starting like an image (a cheap header check; decoding happens while training).</summary>
    private static void CheckFiles(List<ImageInput> rows, string where)
    {
        var bad = new List<string>();
        int count = 0;
        foreach (var r in rows)
        {
            var problem = Problem(r.ImagePath);
            if (problem is null) continue;
            count++;
            if (bad.Count < 3) bad.Add($"'{r.ImagePath}' ({problem})");
        }
        if (count > 0)
            throw new ArgumentException($"{count:N0} file(s) {where} cannot be read as images: {string.Join(", ", bad)}. " +
                                        $"Replace them with {Kinds} images, or remove them.");
    }

    private static string? Problem(string path)
    {
        Span<byte> head = stackalloc byte[12];
        int n;
        try
        {
            using var f = File.OpenRead(path);
            n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "cannot be opened: " + e.Message; }
        if (n == 0) return "empty";
        var h = head[..n];
        bool image = h.StartsWith(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }) || h.StartsWith(new byte[] { 0xFF, 0xD8, 0xFF })
                     || h.StartsWith("BM"u8) || h.StartsWith("GIF8"u8) || (n >= 12 && h.StartsWith("RIFF"u8) && h[8..12].SequenceEqual("WEBP"u8));
        return image ? null : $"not a {Kinds} file";
    }
}

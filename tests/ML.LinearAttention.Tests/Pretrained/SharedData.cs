namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

/// <summary>Locates the project's real datasets: a <c>shared/data</c> folder beside the repository (../shared/data from its root).</summary>
internal static class SharedData
{
    public static string? Folder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "data");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>The first <paramref name="count"/> sentences of SST-2's test split (raw TSV: sentence TAB label), or null when absent.</summary>
    public static IReadOnlyList<string>? Sst2Sentences(int count)
    {
        var folder = Folder();
        var path = folder is null ? null : Path.Combine(folder, "sst2", "test.tsv");
        if (path is null || !File.Exists(path)) return null;
        return File.ReadLines(path).Skip(1).Select(l => l.Split('\t')[0].Trim()).Where(s => s.Length > 0).Take(count).ToList();
    }
}

using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>One labelled row of the quality benchmark (one or two text fields).</summary>
public sealed class QualityRow
{
    public string Text { get; set; } = "";
    public string Text2 { get; set; } = "";
    public string Label { get; set; } = "";
}

/// <summary>A train/test split of a real data set from ../shared/data.</summary>
/// <param name="Name">Data set name.</param>
/// <param name="Description">Where the rows come from (for the report).</param>
/// <param name="TextColumns">Text columns of <see cref="QualityRow"/> the model reads.</param>
public sealed record QualityData(string Name, string Description, string[] TextColumns, List<QualityRow> Train, List<QualityRow> Test)
{
    /// <summary>
    /// sst2: a seeded sample of <paramref name="trainRows"/> rows of train.tsv.gz (60,614) and the first
    /// <paramref name="testRows"/> of test.tsv (GLUE dev, 872). ag-news: test.csv (7,600) shuffled with a fixed seed, the
    /// last 1,600 rows held out as test (title and description as two text columns), training rows from the rest.
    /// </summary>
    public static QualityData Load(string dataset, string dataFolder, int trainRows, int testRows, int seed)
    {
        if (!Directory.Exists(dataFolder))
            throw new ArgumentException($"The shared data folder '{dataFolder}' does not exist; pass --data-folder (it holds sst2/ and ag-news/).");
        switch (dataset)
        {
            case "sst2":
            {
                var folder = Path.Combine(dataFolder, "sst2");
                var train = Sample(ReadSst2(Path.Combine(folder, "train.tsv.gz"), gz: true), trainRows, seed);
                var test = ReadSst2(Path.Combine(folder, "test.tsv"), gz: false).Take(testRows).ToList();
                return new QualityData("sst2", $"SST-2 (../shared/data/sst2): {train.Count:N0} training rows sampled (seed {seed}) from train.tsv.gz (60,614); " +
                                               $"test = the first {test.Count} rows of test.tsv (= GLUE SST-2 dev, 872 rows)", new[] { "Text" }, train, test);
            }
            case "ag-news":
            {
                var rows = ReadAgNews(Path.Combine(dataFolder, "ag-news", "test.csv"));
                var rng = new Random(1234);
                rows = rows.OrderBy(_ => rng.Next()).ToList();
                var test = rows.Skip(rows.Count - 1600).Take(testRows).ToList();
                var train = Sample(rows.Take(rows.Count - 1600).ToList(), trainRows, seed);
                return new QualityData("ag-news", $"AG News (../shared/data/ag-news/test.csv, 7,600 rows, the only split available), shuffled (seed 1234): " +
                                                  $"{train.Count:N0} training rows from the first 6,000, test = {test.Count} of the last 1,600; title and description as two text columns",
                    new[] { "Text", "Text2" }, train, test);
            }
            default:
                throw new ArgumentException($"--data {dataset} is not supported; use sst2 or ag-news.");
        }
    }

    private static List<QualityRow> Sample(List<QualityRow> rows, int count, int seed)
    {
        if (count >= rows.Count) return rows;
        var rng = new Random(seed);
        return rows.OrderBy(_ => rng.Next()).Take(count).ToList();
    }

    // Raw GLUE TSV (sentence TAB label, header row): split on TAB, no unescaping (see ../shared/data/README.md).
    private static List<QualityRow> ReadSst2(string path, bool gz)
    {
        if (!File.Exists(path)) throw new ArgumentException($"SST-2 file '{path}' not found.");
        using var file = File.OpenRead(path);
        using var stream = gz ? new GZipStream(file, CompressionMode.Decompress) : (Stream)file;
        using var reader = new StreamReader(stream, Encoding.UTF8);
        reader.ReadLine();
        var rows = new List<QualityRow>();
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            int tab = line.LastIndexOf('\t');
            if (tab <= 0) continue;
            rows.Add(new QualityRow { Text = line[..tab].Trim(), Label = line[(tab + 1)..].Trim() == "1" ? "positive" : "negative" });
        }
        return rows;
    }

    private static readonly string[] AgClasses = { "World", "Sports", "Business", "Sci/Tech" };

    // RFC-4180 CSV without header: "class","title","description"; "" is a quote; \n inside texts stays as written.
    private static List<QualityRow> ReadAgNews(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"AG News file '{path}' not found.");
        var rows = new List<QualityRow>();
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            var fields = new List<string>();
            var current = new StringBuilder();
            bool quoted = false;
            for (int i = 0; i < line.Length; i++)
            {
                char c = line[i];
                if (quoted)
                {
                    if (c == '"' && i + 1 < line.Length && line[i + 1] == '"') { current.Append('"'); i++; }
                    else if (c == '"') quoted = false;
                    else current.Append(c);
                }
                else if (c == '"') quoted = true;
                else if (c == ',') { fields.Add(current.ToString()); current.Clear(); }
                else current.Append(c);
            }
            fields.Add(current.ToString());
            if (fields.Count != 3 || !int.TryParse(fields[0], out int cls) || cls is < 1 or > 4) continue;
            rows.Add(new QualityRow { Label = AgClasses[cls - 1], Text = fields[1].Replace("\\n", " "), Text2 = fields[2].Replace("\\n", " ") });
        }
        return rows;
    }
}

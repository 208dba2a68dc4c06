using System.IO.Compression;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>Real data sets of ../shared/data (next to the repository); tests that need one are skipped when it is absent.</summary>
public static class SharedData
{
    /// <summary>The shared data folder, found by walking up from the test binaries to the folder holding LinearAttentionML.sln.</summary>
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LinearAttentionML.sln"))) dir = dir.Parent;
            return dir is null ? "" : Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "data"));
        }
    }

    public static string PathOf(string dataset) => Path.Combine(Root, dataset);

    public static bool Has(string dataset) => Directory.Exists(PathOf(dataset));

    /// <summary>UCI sentiment sentences (amazon, imdb, yelp; 3,000 rows, 50/50), in a fixed shuffled order.</summary>
    public static List<SentimentRow> UciSentiment()
    {
        var rows = new List<SentimentRow>();
        foreach (var file in new[] { "amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt" })
            foreach (var line in File.ReadLines(Path.Combine(PathOf("uci-sentiment-sentences"), file)))
            {
                int tab = line.LastIndexOf('\t');
                if (tab <= 0) continue;
                rows.Add(new SentimentRow { Text = line[..tab].Trim(), Sentiment = line[(tab + 1)..].Trim() == "1" ? "positive" : "negative" });
            }
        var rng = new Random(7);
        return rows.OrderBy(_ => rng.Next()).ToList();
    }

    /// <summary>STS-B sentence pairs with their 0–5 similarity score (split = train, dev or test): a seeded random
    /// sample of <paramref name="max"/> rows (the file is grouped by genre, so its head is not representative).</summary>
    public static List<PairRow> Stsb(string split, int max)
    {
        using var stream = new GZipStream(File.OpenRead(Path.Combine(PathOf("stsb"), "stsb.tsv.gz")), CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        var header = reader.ReadLine()!.Split('\t');
        int iSplit = Array.IndexOf(header, "split"), iScore = Array.IndexOf(header, "score"), i1 = Array.IndexOf(header, "sentence1"), i2 = Array.IndexOf(header, "sentence2");
        var rows = new List<PairRow>();
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            var f = line.Split('\t');
            if (iSplit >= 0 && f[iSplit] != split) continue;
            rows.Add(new PairRow { Sentence1 = Unescape(f[i1]), Sentence2 = Unescape(f[i2]), Score = float.Parse(f[iScore], System.Globalization.CultureInfo.InvariantCulture) });
        }
        var rng = new Random(11);
        return rows.OrderBy(_ => rng.Next()).Take(max).ToList();
    }

    private static string Unescape(string s) => s.Replace("\\t", "\t").Replace("\\n", "\n").Replace("\\r", "\r").Replace("\\\\", "\\");
}

public sealed class SentimentRow
{
    public string Text { get; set; } = "";
    public string Sentiment { get; set; } = "";
}

public sealed class PairRow
{
    public string Sentence1 { get; set; } = "";
    public string Sentence2 { get; set; } = "";
    public float Score { get; set; }
}

/// <summary>A fact that is skipped, with a message saying what is missing, when a shared data set is absent.</summary>
public sealed class SharedDataFactAttribute : FactAttribute
{
    public SharedDataFactAttribute(string dataset)
    {
        if (!SharedData.Has(dataset))
            Skip = $"Shared data set '{dataset}' not found at {SharedData.PathOf(dataset)} (the ../shared/data folder next to the repository); this test needs it.";
    }
}

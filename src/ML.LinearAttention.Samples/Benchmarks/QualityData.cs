namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>One row of the quality benchmark: one or two text fields and a class (<see cref="Label"/>) or a score (<see cref="Target"/>).</summary>
public sealed class QualityRow
{
    public string Text { get; set; } = "";
    public string Text2 { get; set; } = "";
    public string Label { get; set; } = "";
    public float Target { get; set; }
}

/// <summary>A data set of ../shared/data, split into a training pool and a test set.</summary>
/// <param name="Name">Data set name (its folder).</param>
/// <param name="Description">Where the rows come from and how they were split (for the report).</param>
/// <param name="TextColumns">Text columns of <see cref="QualityRow"/> the models read.</param>
/// <param name="Regression">True when <see cref="QualityRow.Target"/> is the label (R² instead of accuracy).</param>
/// <param name="MaxLength">Tokens per row that fit the texts (64 short sentences, 128 pairs and news, 256 long documents).</param>
/// <param name="Train">Every training row available (the benchmark samples its sizes from it).</param>
/// <param name="Test">The test rows.</param>
public sealed record QualityData(string Name, string Description, string[] TextColumns, bool Regression, int MaxLength, List<QualityRow> Train, List<QualityRow> Test)
{
    /// <summary>The data sets, in report order.</summary>
    public static readonly string[] Names =
        { "sst2", "imdb-reviews", "github-issues-corefx", "bbc-news", "uci-sentiment-sentences", "wikipedia-detox-250", "stsb", "ag-news" };

    /// <summary>The data sets a run covers when none is named (ag-news has no training split of its own).</summary>
    public static readonly string[] Default = Names[..7];

    /// <summary>Share of the rows held out as test where the source has no split of its own.</summary>
    private const double HeldOut = 0.2;

    /// <summary>
    /// As <see cref="Load(string, string, int)"/>, with the training pool cut to a seeded sample of
    /// <paramref name="trainRows"/> rows (the other benchmarks' form: a fixed training size).
    /// </summary>
    public static QualityData Load(string dataset, string dataFolder, int trainRows, int testRows, int seed)
    {
        var data = Load(dataset, dataFolder, testRows);
        var train = Sample(data.Train, trainRows, seed);
        return data with { Train = train, Description = $"{data.Description}; train = {train.Count:N0} rows sampled (seed {seed})" };
    }

    /// <summary>
    /// Reads <paramref name="dataset"/> from <paramref name="dataFolder"/>: its training pool and at most
    /// <paramref name="testRows"/> test rows (a fixed sample, seed 1234, the same for every method and size).
    /// </summary>
    public static QualityData Load(string dataset, string dataFolder, int testRows)
    {
        if (!Directory.Exists(dataFolder))
            throw new ArgumentException($"The shared data folder '{dataFolder}' does not exist; pass --data-folder (the folder that holds sst2/, stsb/, …).");
        string F(params string[] parts) => Path.Combine(new[] { dataFolder, dataset }.Concat(parts).ToArray());
        var one = new[] { "Text" };
        var two = new[] { "Text", "Text2" };
        QualityData Made(string description, string[] columns, int maxLength, List<QualityRow> train, List<QualityRow> test, bool regression = false)
        {
            var sampled = Sample(test, testRows, 1234);
            return new QualityData(dataset, $"{description}; test = {sampled.Count:N0} of {test.Count:N0} rows" + (sampled.Count < test.Count ? " (fixed sample, seed 1234)" : ""),
                columns, regression, maxLength, train, sampled);
        }
        switch (dataset)
        {
            case "sst2":
                return Made("SST-2: train.tsv.gz (60,614 rows); test = GLUE dev (test.tsv)", one, 64,
                    QualityDatasets.Sst2(F("train.tsv.gz"), gz: true), QualityDatasets.Sst2(F("test.tsv"), gz: false));
            case "imdb-reviews":
                return Made("IMDB reviews (aclImdb): imdb-train.tsv.gz (25,000, pos/neg); test from imdb-test.tsv.gz", one, 256,
                    QualityDatasets.Imdb(F("imdb-train.tsv.gz")), QualityDatasets.Imdb(F("imdb-test.tsv.gz")));
            case "github-issues-corefx":
            {
                var (train, test) = Split(QualityDatasets.Corefx(F("corefx-issues-train.tsv")));
                return Made($"corefx GitHub issues (1,615 rows, 22 areas; no split: {HeldOut:P0} held out, seed 1234); title and description as two text columns", two, 256, train, test);
            }
            case "bbc-news":
            {
                var (train, test) = Split(QualityDatasets.Bbc(F("bbc.tsv.gz")));
                return Made($"BBC news (2,225 articles, 5 topics; no split: {HeldOut:P0} held out, seed 1234)", one, 256, train, test);
            }
            case "uci-sentiment-sentences":
            {
                var rows = new[] { "amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt" }.SelectMany(f => QualityDatasets.Uci(F(f))).ToList();
                var (train, test) = Split(rows);
                return Made($"UCI sentiment sentences (Amazon, IMDB, Yelp: 3,000 rows; no split: {HeldOut:P0} held out, seed 1234)", one, 64, train, test);
            }
            case "wikipedia-detox-250":
            {
                // The source's own test file has 18 rows; pooled with the 249 data rows, a 20 % hold-out gives 53.
                var rows = QualityDatasets.Detox(F("wikipedia-detox-250-line-data.tsv")).Concat(QualityDatasets.Detox(F("wikipedia-detox-250-line-test.tsv"))).ToList();
                var (train, test) = Split(rows);
                return Made($"Wikipedia detox 250 (data 249 + test 18 rows pooled; {HeldOut:P0} held out, seed 1234)", one, 128, train, test);
            }
            case "stsb":
            {
                var rows = QualityDatasets.Stsb(F("stsb.tsv.gz"));
                return Made("STS-B sentence pairs, score 0–5 (regression): train split (5,749); test = dev split (1,500)", two, 128,
                    rows.Where(r => r.Split == "train").Select(r => r.Row).ToList(), rows.Where(r => r.Split == "dev").Select(r => r.Row).ToList(), regression: true);
            }
            case "ag-news":
            {
                var (train, test) = Split(QualityDatasets.AgNews(F("test.csv")));
                return Made($"AG News (test.csv, 7,600 rows, the only split available; {HeldOut:P0} held out, seed 1234); title and description as two text columns", two, 128, train, test);
            }
            default:
                throw new ArgumentException($"Data set '{dataset}' is not supported; use {string.Join(", ", Names)}.");
        }
    }

    /// <summary>A fixed sample of <paramref name="count"/> rows (all of them when there are no more).</summary>
    public static List<QualityRow> Sample(List<QualityRow> rows, int count, int seed)
    {
        if (count >= rows.Count) return rows;
        var rng = new Random(seed);
        return rows.OrderBy(_ => rng.Next()).Take(count).ToList();
    }

    private static (List<QualityRow> Train, List<QualityRow> Test) Split(List<QualityRow> rows)
    {
        var rng = new Random(1234);
        var shuffled = rows.OrderBy(_ => rng.Next()).ToList();
        int test = (int)Math.Round(shuffled.Count * HeldOut);
        return (shuffled.Take(shuffled.Count - test).ToList(), shuffled.Skip(shuffled.Count - test).ToList());
    }
}

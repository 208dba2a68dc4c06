using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// Readers of the files in ../shared/data (formats in each folder's SOURCE.md). Raw source files are split on TAB
/// as they are; files the data folder converted escape \\, \t, \n and \r inside text fields and are unescaped here.
/// </summary>
internal static class QualityDatasets
{
    /// <summary>GLUE SST-2 TSV: sentence TAB label, header row; raw.</summary>
    public static List<QualityRow> Sst2(string path, bool gz)
        => Lines(path, gz, header: true).Select(l => (Line: l, Tab: l.LastIndexOf('\t'))).Where(x => x.Tab > 0)
            .Select(x => new QualityRow { Text = x.Line[..x.Tab].Trim(), Label = x.Line[(x.Tab + 1)..].Trim() == "1" ? "positive" : "negative" }).ToList();

    /// <summary>aclImdb, converted: id, label (pos/neg), rating, url, text.</summary>
    public static List<QualityRow> Imdb(string path)
        => Fields(path, gz: true, count: 5).Select(f => new QualityRow { Text = Unescape(f[4]), Label = f[1] }).ToList();

    /// <summary>corefx issues, raw: ID, Area, Title, Description (a description may hold TABs of its own).</summary>
    public static List<QualityRow> Corefx(string path)
        => Lines(path, gz: false, header: true).Select(l => l.Split('\t')).Where(f => f.Length >= 4)
            .Select(f => new QualityRow { Label = f[1], Text = f[2], Text2 = string.Join(' ', f[3..]) }).ToList();

    /// <summary>BBC news, converted: id, label, text.</summary>
    public static List<QualityRow> Bbc(string path)
        => Fields(path, gz: true, count: 3).Select(f => new QualityRow { Text = Unescape(f[2]), Label = f[1] }).ToList();

    /// <summary>UCI sentiment sentences: sentence TAB 0/1, no header; lines end at \n only (the files hold U+0085).</summary>
    public static List<QualityRow> Uci(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"Data file '{path}' not found.");
        return File.ReadAllText(path, Encoding.UTF8).Split('\n').Select(l => l.TrimEnd('\r')).Select(l => (Line: l, Tab: l.LastIndexOf('\t')))
            .Where(x => x.Tab > 0).Select(x => new QualityRow { Text = x.Line[..x.Tab].Trim(), Label = x.Line[(x.Tab + 1)..].Trim() == "1" ? "positive" : "negative" }).ToList();
    }

    /// <summary>Wikipedia detox, raw: Sentiment (1 = toxic), SentimentText.</summary>
    public static List<QualityRow> Detox(string path)
        => Lines(path, gz: false, header: true).Select(l => l.Split('\t', 2)).Where(f => f.Length == 2 && f[0] is "0" or "1")
            .Select(f => new QualityRow { Text = f[1].Trim(), Label = f[0] == "1" ? "toxic" : "not toxic" }).ToList();

    /// <summary>STS-B, converted: split, genre, filename, year, sid, score, sentence1, sentence2, extra.</summary>
    public static List<(string Split, QualityRow Row)> Stsb(string path)
        => Fields(path, gz: true, count: 8).Select(f => (f[0], new QualityRow
        {
            Text = Unescape(f[6]), Text2 = Unescape(f[7]), Target = float.Parse(f[5], NumberStyles.Float, CultureInfo.InvariantCulture),
        })).ToList();

    private static readonly string[] AgClasses = { "World", "Sports", "Business", "Sci/Tech" };

    /// <summary>AG News: RFC-4180 CSV without header, "class","title","description"; "" is a quote.</summary>
    public static List<QualityRow> AgNews(string path)
    {
        var rows = new List<QualityRow>();
        foreach (var line in Lines(path, gz: false, header: false))
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

    private static IEnumerable<string[]> Fields(string path, bool gz, int count)
        => Lines(path, gz, header: true).Select(l => l.Split('\t')).Where(f => f.Length >= count);

    private static IEnumerable<string> Lines(string path, bool gz, bool header)
    {
        if (!File.Exists(path)) throw new ArgumentException($"Data file '{path}' not found.");
        using var file = File.OpenRead(path);
        using var stream = gz ? new GZipStream(file, CompressionMode.Decompress) : (Stream)file;
        using var reader = new StreamReader(stream, Encoding.UTF8);
        if (header) reader.ReadLine();
        string? line;
        while ((line = reader.ReadLine()) is not null)
            if (line.Length > 0) yield return line;
    }

    /// <summary>Undoes the data folder's escapes: \\ → \, \t → TAB, \n → LF, \r → CR.</summary>
    public static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 == s.Length) { sb.Append(s[i]); continue; }
            char next = s[++i];
            sb.Append(next switch { 't' => '\t', 'n' => '\n', 'r' => '\r', _ => next });
        }
        return sb.ToString();
    }
}

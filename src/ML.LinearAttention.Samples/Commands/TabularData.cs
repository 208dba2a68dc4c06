using System.Globalization;
using System.IO.Compression;
using System.Text;
using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>What the model predicts, decided from the label column unless given.</summary>
public enum TaskKind
{
    /// <summary>Text (or few integer) labels: a classifier.</summary>
    Classification,
    /// <summary>Numeric labels: a regressor.</summary>
    Regression,
}

/// <summary>
/// A user's CSV or TSV file with a header row: separator detection, column lookup by header name, label-kind inference,
/// and ML.NET TextLoaders for given column roles (quoted fields and multi-line quoted text allowed).
/// </summary>
public sealed class TabularData
{
    private TabularData(string path, char separator, IReadOnlyList<string> header)
    {
        Path = path;
        Separator = separator;
        Header = header;
    }

    /// <summary>Full path of the file.</summary>
    public string Path { get; }
    /// <summary>Field separator (',', '\t' or ';').</summary>
    public char Separator { get; }
    /// <summary>Column names from the header row.</summary>
    public IReadOnlyList<string> Header { get; }

    /// <summary>True when the file is gzip-compressed (read through a GZipStream, never unpacked on disk).</summary>
    public bool Compressed { get; private init; }

    /// <summary>The file name without its extensions (`.gz` and `.csv`/`.tsv`): the stem of files written next to it.</summary>
    public string Stem => System.IO.Path.GetFileNameWithoutExtension(Compressed ? System.IO.Path.GetFileNameWithoutExtension(Path) : Path);

    /// <summary>Opens <paramref name="path"/>: reads its header and picks the separator (<paramref name="separator"/>: auto, comma, tab, semicolon).</summary>
    public static TabularData Open(string path, string? separator = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new ArgumentException($"The data file '{full}' does not exist.");
        bool compressed = IsGzip(full);
        string first;
        using (var reader = OpenText(full, compressed))
            first = ReadHeader(reader, full, compressed);
        char sep = separator?.ToLowerInvariant() switch
        {
            null or "auto" => Sniff(compressed ? full[..^System.IO.Path.GetExtension(full).Length] : full, first),
            "comma" or "," => ',',
            "tab" or "\\t" or "\t" => '\t',
            "semicolon" or ";" => ';',
            _ => throw new ArgumentException($"--separator {separator}: use auto, comma, tab or semicolon."),
        };
        var header = SplitLine(first, sep).Select(h => h.Trim()).ToList();
        var duplicate = header.GroupBy(h => h, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"The header of '{full}' names column '{duplicate.Key}' twice; column names must be unique.");
        return new TabularData(full, sep, header) { Compressed = compressed };
    }

    private static bool IsGzip(string path)
    {
        Span<byte> magic = stackalloc byte[2];
        using var f = File.OpenRead(path);
        return f.Read(magic) == 2 && magic[0] == 0x1F && magic[1] == 0x8B;
    }

    private static StreamReader OpenText(string path, bool compressed)
    {
        Stream stream = File.OpenRead(path);
        if (compressed) stream = new GZipStream(stream, CompressionMode.Decompress);
        return new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
    }

    /// <summary>The header row; a binary file (another compression, a spreadsheet) is an error, not a header of control characters.</summary>
    private static string ReadHeader(StreamReader reader, string path, bool compressed)
    {
        string? first;
        try { first = reader.ReadLine(); }
        catch (InvalidDataException e) { throw new ArgumentException($"'{path}' starts like a gzip file but cannot be decompressed ({e.Message}); it may be damaged or incomplete."); }
        if (first is null) throw new ArgumentException($"The data file '{path}' is empty; it needs a header row naming the columns.");
        if (first.Any(c => char.IsControl(c) && c != '\t'))
            throw new ArgumentException($"'{path}' is not a text file{(compressed ? " (after gzip decompression)" : "")}: its first line holds control characters. " +
                                        "Give a CSV/TSV file (plain, or compressed with gzip as .csv.gz/.tsv.gz); unpack other archives (.zip, .bz2, .xz) or export spreadsheets as CSV first.");
        return first;
    }

    private static char Sniff(string path, string headerLine)
    {
        var ext = System.IO.Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".tsv" or ".tab") return '\t';
        int tabs = headerLine.Count(c => c == '\t'), commas = headerLine.Count(c => c == ','), semis = headerLine.Count(c => c == ';');
        if (tabs >= commas && tabs >= semis && tabs > 0) return '\t';
        if (semis > commas) return ';';
        return ',';
    }

    /// <summary>Splits one line into fields (double quotes group a field; "" inside quotes is a quote).</summary>
    public static List<string> SplitLine(string line, char separator)
    {
        var fields = new List<string>();
        var sb = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < line.Length; i++)
        {
            char c = line[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < line.Length && line[i + 1] == '"') { sb.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else sb.Append(c);
            }
            else if (c == '"') quoted = true;
            else if (c == separator) { fields.Add(sb.ToString()); sb.Clear(); }
            else sb.Append(c);
        }
        fields.Add(sb.ToString());
        return fields;
    }

    /// <summary>Index of a column by header name; a clear error listing the header otherwise.</summary>
    public int IndexOf(string column)
    {
        for (int i = 0; i < Header.Count; i++) if (string.Equals(Header[i], column, StringComparison.Ordinal)) return i;
        var near = Header.FirstOrDefault(h => string.Equals(h, column, StringComparison.OrdinalIgnoreCase));
        throw new ArgumentException($"Column '{column}' is not in the header of '{Path}'{(near is null ? "" : $" (did you mean '{near}'?)")}. Columns: {string.Join(", ", Header)}.");
    }

    /// <summary>A TextLoader reading <paramref name="columns"/> (name → type) by header position.</summary>
    public IDataView Load(MLContext ml, IEnumerable<(string Name, DataKind Kind)> columns)
    {
        var loaderColumns = columns.Select(c => new TextLoader.Column(c.Name, c.Kind, IndexOf(c.Name))).ToArray();
        var loader = ml.Data.CreateTextLoader(new TextLoader.Options
        {
            Columns = loaderColumns,
            Separators = new[] { Separator },
            HasHeader = true,
            AllowQuoting = true,
            ReadMultilines = true,
            TrimWhitespace = false,
            MissingRealsAsNaNs = true,
        });
        return loader.Load(new Source(this));
    }

    /// <summary>The file as ML.NET reads it: through a GZipStream when compressed, so `.csv.gz` needs no unpacking.</summary>
    private sealed class Source(TabularData data) : IMultiStreamSource
    {
        public int Count => 1;
        public string GetPathOrNull(int index) => data.Path;
        public Stream Open(int index) => data.Compressed ? new GZipStream(File.OpenRead(data.Path), CompressionMode.Decompress) : File.OpenRead(data.Path);
        public TextReader OpenTextReader(int index) => OpenText(data.Path, data.Compressed);
    }

    /// <summary>
    /// Throws unless every non-empty value of <paramref name="column"/> is a number. ML.NET reads a text value of a
    /// numeric column as NaN, so a text column given as numeric features would train on nothing but missing values.
    /// </summary>
    public void RequireNumbers(MLContext ml, string column, string option)
    {
        var view = Load(ml, new[] { (column, DataKind.String) });
        long row = 0, numbers = 0, other = 0;
        var examples = new List<string>();
        using (var cursor = view.GetRowCursor(view.Schema))
        {
            var get = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema[column]);
            ReadOnlyMemory<char> v = default;
            while (cursor.MoveNext())
            {
                get(ref v);
                row++;
                var s = v.ToString().Trim();
                if (s.Length == 0 || s == "?") continue; // missing: ML.NET reads both as NaN, replaced by the training mean
                if (float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _)) { numbers++; continue; }
                other++;
                if (examples.Count < 3) examples.Add($"row {row:N0}: '{(s.Length > 40 ? s[..40] + "…" : s)}'");
            }
        }
        if (other == 0) return;
        string seen = string.Join(", ", examples);
        if (numbers == 0)
            throw new ArgumentException($"Column '{column}' of '{Path}' holds text, not numbers ({seen}); {option} takes numeric columns only. " +
                                        "Give a text column to --text instead.");
        throw new ArgumentException($"Column '{column}' of '{Path}' ({option}) holds numbers, but {other:N0} value(s) are not numbers ({seen}). " +
                                    "Correct them, or leave a missing value empty (it becomes the training mean).");
    }

    /// <summary>The label kind of <paramref name="labelColumn"/> and the reason, from up to 100,000 values.</summary>
    public (TaskKind Task, string Reason) InferTask(MLContext ml, string labelColumn)
    {
        var view = Load(ml, new[] { (labelColumn, DataKind.String) });
        var distinct = new HashSet<string>(StringComparer.Ordinal);
        bool allNumeric = true, allIntegers = true;
        long rows = 0, empty = 0;
        using (var cursor = view.GetRowCursor(view.Schema))
        {
            var get = cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema[labelColumn]);
            ReadOnlyMemory<char> v = default;
            while (cursor.MoveNext() && rows < 100_000)
            {
                get(ref v);
                rows++;
                var s = v.ToString().Trim();
                if (s.Length == 0) { empty++; continue; }
                if (distinct.Count <= 1000) distinct.Add(s);
                if (allNumeric && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d))
                    allIntegers &= Math.Abs(d - Math.Round(d)) < 1e-9;
                else allNumeric = false;
            }
        }
        if (rows - empty == 0) throw new ArgumentException($"The label column '{labelColumn}' of '{Path}' holds no value.");
        string counted = distinct.Count > 1000 ? "over 1,000" : distinct.Count.ToString("N0", CultureInfo.InvariantCulture);
        if (!allNumeric) return (TaskKind.Classification, $"label '{labelColumn}' holds text ({counted} distinct values): classification");
        if (allIntegers && distinct.Count <= 10)
            return (TaskKind.Classification, $"label '{labelColumn}' holds {counted} distinct integers: classification (use --task regression to predict them as numbers)");
        return (TaskKind.Regression, $"label '{labelColumn}' is numeric ({counted} distinct values): regression (use --task classification for class codes)");
    }
}

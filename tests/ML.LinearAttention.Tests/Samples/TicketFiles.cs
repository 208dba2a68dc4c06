using System.Globalization;
using System.Text;
using Microsoft.ML.LinearAttention.SampleData;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>Synthetic support tickets written as the CSV/TSV files a user would bring.</summary>
internal static class TicketFiles
{
    public static string Write(string path, IEnumerable<SupportTicket> tickets, char separator = ',', bool withLabels = true, IEnumerable<string>? extraLabels = null)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        var header = new List<string> { "Title", "Body", "Tier", "Users" };
        if (withLabels) header.AddRange(new[] { "Priority", "Hours" });
        sb.AppendLine(string.Join(separator, header));
        var labels = extraLabels?.ToList();
        int i = 0;
        foreach (var t in tickets)
        {
            var fields = new List<string> { t.Title, t.Body, t.Numbers[0].ToString(inv), t.Numbers[1].ToString(inv) };
            if (withLabels) fields.AddRange(new[] { labels is not null && i < labels.Count ? labels[i] : t.Priority, t.ResolutionHours.ToString("F2", inv) });
            sb.AppendLine(string.Join(separator, fields.Select(f => Quote(f, separator))));
            i++;
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    private static string Quote(string f, char separator) => f.IndexOfAny(new[] { separator, '"', '\n' }) >= 0 ? "\"" + f.Replace("\"", "\"\"") + "\"" : f;

    /// <summary>Arguments of a tiny, fast `train` run.</summary>
    public static List<string> TinyTrainArgs(string data, string model, string label = "Priority") => new()
    {
        "--data", data, "--text", "Title,Body", "--features", "Tier,Users", "--label", label, "--model", model,
        "--epochs", "2", "--dim", "16", "--layers", "1", "--heads", "2", "--batch", "16", "--max-length", "128", "--progress", "none",
    };
}

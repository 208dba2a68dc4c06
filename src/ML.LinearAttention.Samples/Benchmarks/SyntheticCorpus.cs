using System.Text;
using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>One row of the benchmarks' synthetic text: a document and a two-class key label.</summary>
public sealed class BenchmarkRow
{
    public string Text { get; set; } = "";
    /// <summary>0 or 1: LoadFromEnumerable reads key properties 0-based (stored as 1 and 2, 0 being missing).</summary>
    [KeyType(2)] public uint Label { get; set; }
}

/// <summary>
/// Deterministic synthetic documents for the throughput benchmarks, made lazily row by row (a 64K-token document is
/// never held longer than its batch): sentences of common English words that the bert-base-uncased WordPiece
/// vocabulary keeps whole, so a document of n words is at least n tokens and is cut to exactly MaxSequenceLength.
/// The benchmarks measure speed, so the labels are random.
/// </summary>
public static class SyntheticCorpus
{
    private static readonly string[] Words =
    (
        "the customer reported that an invoice payment failed after the last update please refund my account login error " +
        "shipping delayed warehouse ticket priority urgent order number was charged twice and support did not answer " +
        "when will the package arrive we need help with the new system because it crashed during export of data " +
        "report sales team manager contract renewal price discount quote product service issue request change " +
        "password reset email phone call back today tomorrow week month year time date address delivery return " +
        "item missing broken damaged wrong size color model version software hardware network server database " +
        "backup restore upgrade install license user admin access permission denied page screen button click " +
        "open close save print scan upload download file folder document image video audio message chat online"
    ).Split(' ');

    /// <summary><paramref name="count"/> rows of <paramref name="words"/> words each (a period every 12 words).</summary>
    public static IEnumerable<BenchmarkRow> Rows(int count, int words, int seed)
    {
        for (int i = 0; i < count; i++)
        {
            var rng = new Random(unchecked(seed * 1_000_003 + i));
            var text = new StringBuilder(words * 8);
            for (int w = 0; w < words; w++)
            {
                text.Append(Words[rng.Next(Words.Length)]);
                text.Append(w % 12 == 11 ? ". " : " ");
            }
            // Alternate so every fit, however small, holds both classes (LoadFromEnumerable reads this [KeyType] value
            // as the 0-based class index).
            yield return new BenchmarkRow { Text = text.ToString(), Label = (uint)(i % 2) };
        }
    }
}

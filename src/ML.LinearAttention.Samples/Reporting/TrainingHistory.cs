using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>
/// The loss and validation points of a resumable run, one JSON object a line in the checkpoint directory, appended as
/// training goes so that they survive a crash. A resumed run reads back the points up to the step of the checkpoint it
/// resumed from (later ones were trained again) and keeps appending; the curves and the card then show the whole run.
/// </summary>
public sealed class TrainingHistory(string path)
{
    /// <summary>The file's name inside the checkpoint directory (not a checkpoint name, so the trainer leaves it alone).</summary>
    public const string FileName = "training-history.jsonl";

    public string Path { get; } = path;

    /// <summary>One point: a loss (Epoch null) or an epoch's validation metric.</summary>
    public sealed record Point(long Step, double Loss, int? Epoch = null, double? Metric = null);

    /// <summary>Starts a fresh file (an earlier run's points do not belong to this one).</summary>
    public void Reset()
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!);
        File.WriteAllText(Path, "");
    }

    /// <summary>The points up to <paramref name="step"/>; the file is rewritten to hold just them. A missing or
    /// damaged file (a line cut by a crash) gives what could be read.</summary>
    public List<Point> ResumeAt(long step)
    {
        var kept = new List<Point>();
        if (File.Exists(Path))
            foreach (var line in File.ReadLines(Path))
            {
                Point? p = null;
                try { p = JsonSerializer.Deserialize<Point>(line); } catch (JsonException) { }
                if (p is not null && p.Step <= step) kept.Add(p);
            }
        AtomicFile.WriteAllText(Path, string.Concat(kept.Select(p => JsonSerializer.Serialize(p) + "\n")));
        return kept;
    }

    /// <summary>Appends one point (flushed to the OS on return, so a killed process keeps it).</summary>
    public void Append(Point p) => File.AppendAllText(Path, JsonSerializer.Serialize(p) + "\n");

    /// <summary>Removes the file once the model is saved: a finished run has nothing left to resume.</summary>
    public void Delete()
    {
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

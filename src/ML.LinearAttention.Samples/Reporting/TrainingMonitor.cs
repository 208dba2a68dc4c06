using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>How training progress is shown on the console.</summary>
public enum ProgressMode
{
    /// <summary>A bar redrawn in place (interactive terminals).</summary>
    Bar,
    /// <summary>A line every N steps and at each epoch's end (logs, CI, other programs reading the output).</summary>
    Lines,
    /// <summary>A line every 10% and at the end of each epoch (redirected output).</summary>
    Milestones,
    /// <summary>Nothing.</summary>
    None,
}

/// <summary>
/// The training IProgress callback of the samples: draws a progress bar (epoch, step, loss, validation metric, learning
/// rate, tokens/s, ETA) and records the loss and validation curves for the PNG chart. Every step is recorded; in
/// <see cref="ProgressMode.Lines"/> a line is printed every <paramref name="logEvery"/> steps (default 1% of the run,
/// at least 10) and at each epoch's end, so a long run does not print one line per step.
/// </summary>
public sealed class TrainingMonitor(TextWriter output, ProgressMode mode, string metricName, int? logEvery = null) : IProgress<TrainingProgress>
{
    private readonly object _gate = new();
    private readonly Stopwatch _redraw = Stopwatch.StartNew();
    private int _lastMilestone = -1;
    private int _barWidth;
    private long _lastLine = -1;

    /// <summary>Steps between two lines of <see cref="ProgressMode.Lines"/>.</summary>
    public long LinesEvery(long totalSteps) => logEvery ?? Math.Max(10, (totalSteps + 99) / 100);

    /// <summary>(step, mean loss since the previous report).</summary>
    public List<(double Step, double Loss)> Loss { get; } = new();
    /// <summary>(epoch, validation metric) at the end of each epoch with validation data.</summary>
    public List<(double Epoch, double Metric)> Validation { get; } = new();
    /// <summary>The last report.</summary>
    public TrainingProgress? Last { get; private set; }
    /// <summary>Where the points are kept for a resumed run (with checkpoints on), else null.</summary>
    public TrainingHistory? History { get; init; }
    /// <summary>What the throughput counts: "tok" (text) or "img" (images).</summary>
    public string Unit { get; init; } = "tok";
    /// <summary>The checkpoint step this run resumed from (null for a fresh run).</summary>
    public long? ResumedFromStep { get; private set; }

    /// <summary>Picks the bar for terminals and milestones for redirected output, unless <paramref name="requested"/> says otherwise.</summary>
    public static ProgressMode Choose(string? requested) => requested?.ToLowerInvariant() switch
    {
        null or "auto" => Console.IsOutputRedirected ? ProgressMode.Milestones : ProgressMode.Bar,
        "bar" => ProgressMode.Bar,
        "lines" => ProgressMode.Lines,
        "none" => ProgressMode.None,
        _ => throw new ArgumentException($"--progress {requested}: use auto, bar, lines or none."),
    };

    public void Report(TrainingProgress p)
    {
        lock (_gate)
        {
            if (Last is null) Begin(p);
            bool epochEnd = Last is { } prev && prev.Epoch == p.Epoch && prev.Step == p.Step || p.ValidationMetric is not null;
            if (Loss.Count == 0 || Loss[^1].Step != p.Step)
            {
                Loss.Add((p.Step, p.Loss));
                History?.Append(new TrainingHistory.Point(p.Step, p.Loss));
            }
            if (p.ValidationMetric is { } m)
            {
                Validation.Add((p.Epoch, m));
                History?.Append(new TrainingHistory.Point(p.Step, p.Loss, p.Epoch, m));
            }
            Last = p;
            int percent = p.TotalSteps > 0 ? (int)Math.Min(100, p.Step * 100 / p.TotalSteps) : 0;
            switch (mode)
            {
                case ProgressMode.Lines when epochEnd || p.Step == p.TotalSteps || p.Step % LinesEvery(p.TotalSteps) == 0:
                    if (p.Step == _lastLine && p.ValidationMetric is null) break; // an epoch's end without a metric repeats the step's line
                    output.WriteLine(Describe(p));
                    _lastLine = p.Step;
                    break;
                case ProgressMode.Milestones when percent / 10 > _lastMilestone || epochEnd:
                    _lastMilestone = percent / 10;
                    output.WriteLine(Describe(p));
                    break;
                case ProgressMode.Bar when _redraw.ElapsedMilliseconds >= 100 || percent == 100 || p.ValidationMetric is not null:
                    _redraw.Restart();
                    Draw(p, percent);
                    break;
            }
        }
    }

    /// <summary>
    /// The first report: a fresh run starts a new history; a resumed one says so and takes back the earlier run's points
    /// up to the checkpoint's step, so the curves and the card cover the whole run.
    /// </summary>
    private void Begin(TrainingProgress p)
    {
        if (p.ResumedFromStep is not { } step)
        {
            History?.Reset();
            return;
        }
        ResumedFromStep = step;
        var earlier = History?.ResumeAt(step) ?? new List<TrainingHistory.Point>();
        foreach (var point in earlier)
        {
            if (point.Epoch is { } e && point.Metric is { } m) Validation.Add((e, m));
            else if (Loss.Count == 0 || Loss[^1].Step != point.Step) Loss.Add((point.Step, point.Loss));
        }
        var kept = History is null ? "" : earlier.Count == 0
            ? $"; no earlier loss points were found in {History.Path}, so the curves start here"
            : $"; the curves keep the earlier run's {Loss.Count:N0} loss and {Validation.Count:N0} validation point(s)";
        output.WriteLine($"resuming from step {step:N0} of {p.TotalSteps:N0} (the newest checkpoint){kept}.");
    }

    /// <summary>Writes a message above the bar (the bar is redrawn after it).</summary>
    public void WriteLine(string message)
    {
        lock (_gate)
        {
            if (mode == ProgressMode.Bar && _barWidth > 0) output.Write("\r" + new string(' ', _barWidth) + "\r");
            output.WriteLine(message);
            if (mode == ProgressMode.Bar && Last is { } p) Draw(p, p.TotalSteps > 0 ? (int)Math.Min(100, p.Step * 100 / p.TotalSteps) : 0);
        }
    }

    /// <summary>Ends the bar's line.</summary>
    public void Finish()
    {
        lock (_gate)
        {
            if (mode == ProgressMode.Bar && _barWidth > 0) output.WriteLine();
            _barWidth = 0;
        }
    }

    private void Draw(TrainingProgress p, int percent)
    {
        const int cells = 24;
        int filled = percent * cells / 100;
        var line = $"[{new string('#', filled)}{new string('-', cells - filled)}] {percent,3}% {Describe(p)}";
        int window = Console.IsOutputRedirected ? 0 : SafeWindowWidth();
        int width = window >= 40 ? window - 1 : 120; // unknown sizes (pseudo-terminals report 0) get a generous default
        if (line.Length > width) line = line[..width];
        output.Write("\r" + line.PadRight(_barWidth));
        _barWidth = line.Length;
    }

    private static int SafeWindowWidth()
    {
        try { return Console.WindowWidth; }
        catch (IOException) { return 0; }
    }

    private string Describe(TrainingProgress p)
    {
        var inv = CultureInfo.InvariantCulture;
        string metric = p.ValidationMetric is { } m ? $" {metricName} {m.ToString("F4", inv)}" : "";
        return $"epoch {p.Epoch} step {p.Step}/{p.TotalSteps} loss {p.Loss.ToString("F4", inv)}{metric} lr {p.LearningRate.ToString("0.##E+0", inv)} " +
               $"{p.TokensPerSecond.ToString("N0", inv)} {Unit}/s ETA {p.Eta:hh\\:mm\\:ss}";
    }
}

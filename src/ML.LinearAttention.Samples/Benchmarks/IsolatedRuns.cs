using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Point = Microsoft.ML.LinearAttention.Samples.Benchmarks.TrainingBenchmark.Point;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench training` with each mechanism in a child process of the same app (the default on CUDA). After a CUDA
/// out-of-memory error libtorch may keep memory or abort later from a thread .NET cannot catch, so a process that ran
/// out of memory measures nothing more: the parent records the point, and measures it again, and the mechanism's
/// longer lengths, in a fresh process with activation checkpointing. A child that dies is recorded as such, and the
/// run goes on with the next mechanism. Children append their points to a file as JSON lines.
/// </summary>
internal static class IsolatedRuns
{
    /// <summary>Exit code of a child that stopped because a point ran out of memory.</summary>
    public const int OutOfMemoryExitCode = 3;

    public static IEnumerable<Point> Mechanism(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, Stopwatch total, TextWriter log,
        Func<long, string, Point> skipped)
    {
        var remaining = o.Lengths.ToList();
        bool checkpoint = o.ActivationCheckpointing;
        while (remaining.Count > 0)
        {
            double left = o.BudgetSeconds > 0 ? o.BudgetSeconds - total.Elapsed.TotalSeconds : double.PositiveInfinity;
            if (left <= 0)
            {
                foreach (long t in remaining) yield return skipped(t, $"skipped: the command's {o.BudgetSeconds:F0} s budget was spent");
                yield break;
            }
            var file = Path.Combine(Path.GetTempPath(), $"bench-training-{Environment.ProcessId}-{Guid.NewGuid():N}.jsonl");
            int code;
            List<Point> got;
            try
            {
                code = RunChild(o, mechanism.Entry, remaining, checkpoint, left, file, log);
                got = File.Exists(file)
                    ? File.ReadAllLines(file).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<Point>(l)!).ToList()
                    : new List<Point>();
            }
            finally { if (File.Exists(file)) File.Delete(file); }

            bool retry = false;
            foreach (var p in got)
            {
                remaining.Remove(p.T);
                if (p.Status == "OOM" && !checkpoint && o.CheckpointOnOom)
                {
                    log.WriteLine($"{mechanism.Label,-34} T={p.T,6}  out of memory: measured again in a fresh process with activation checkpointing");
                    remaining.Insert(0, p.T);
                    retry = true;
                    break;
                }
                yield return p.Status == "OOM" && checkpoint && !o.ActivationCheckpointing ? p with { Status = "OOM (also with checkpointing)" } : p;
                if (p.Status == "OOM")
                {
                    foreach (long t in remaining) yield return skipped(t, $"skipped: out of memory at T={p.T}");
                    yield break;
                }
            }
            if (retry) { checkpoint = true; continue; }
            if (remaining.Count == 0) yield break;

            // The child ended before its lengths were done and without recording why: it died.
            long failed = remaining[0];
            if (!checkpoint && o.CheckpointOnOom)
            {
                log.WriteLine($"{mechanism.Label,-34} T={failed,6}  the process died (exit code {code}): measured again in a fresh process with activation checkpointing");
                checkpoint = true;
                continue;
            }
            remaining.RemoveAt(0);
            yield return skipped(failed, $"process died (exit code {code}){(checkpoint ? " with checkpointing" : "")}");
            foreach (long t in remaining) yield return skipped(t, $"skipped: the process died at T={failed}");
            yield break;
        }
    }

    private static int RunChild(TrainingBenchmarkOptions o, string entry, List<long> lengths, bool checkpoint, double budgetLeft, string results, TextWriter log)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown; use --in-process.");
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(typeof(IsolatedRuns).Assembly.Location); // `dotnet ML.LinearAttention.Samples.dll …`
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        var args = new List<string>
        {
            "bench", "training", "--child-results", results, "--out", Path.GetTempPath(),
            "--mechanisms", entry, "--hybrid", o.HybridPlan, "--hybrid-base", o.HybridBase,
            "--lengths", string.Join(",", lengths), "--tokens", o.TokensPerStep.ToString(CultureInfo.InvariantCulture),
            "--layers", o.Layers.ToString(CultureInfo.InvariantCulture), "--hidden", o.Hidden.ToString(CultureInfo.InvariantCulture),
            "--heads", o.Heads.ToString(CultureInfo.InvariantCulture), "--dropout", F(o.Dropout),
            "--warmup", o.WarmupSteps.ToString(CultureInfo.InvariantCulture), "--steps", o.Steps.ToString(CultureInfo.InvariantCulture),
            "--seconds", F(o.SecondsPerPoint), "--peak-tflops", F(o.PeakTflops), "--commit", o.Commit, "--machine", o.Machine,
        };
        if (o.Device is not null) args.AddRange(new[] { "--device", o.Device });
        if (checkpoint) args.Add("--checkpointing");
        if (!o.PinnedMemory) args.Add("--no-pinned");
        if (double.IsFinite(budgetLeft)) args.AddRange(new[] { "--budget", F(Math.Max(1, budgetLeft)) });
        if (o.SimulatedFailure is not null) args.AddRange(new[] { "--simulate-failure", o.SimulatedFailure });
        foreach (var a in args) psi.ArgumentList.Add(a);

        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {exe}.");
        void Forward(object _, DataReceivedEventArgs e)
        {
            if (e.Data is null || e.Data.StartsWith("bench training on ", StringComparison.Ordinal)) return; // the parent printed the header
            lock (log) log.WriteLine(e.Data);
        }
        child.OutputDataReceived += Forward;
        child.ErrorDataReceived += Forward;
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        // Every point stops itself at its bound; this only guards against a hung child.
        double limit = o.SecondsPerPoint * (lengths.Count + 1) * 2 + 120;
        if (!child.WaitForExit(TimeSpan.FromSeconds(Math.Min(limit, double.IsFinite(budgetLeft) ? budgetLeft + 2 * o.SecondsPerPoint + 120 : limit))))
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            return -1;
        }
        child.WaitForExit(); // drains the redirected output
        return child.ExitCode;
    }
}

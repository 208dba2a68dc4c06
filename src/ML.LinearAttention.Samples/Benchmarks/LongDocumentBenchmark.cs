using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench long-documents`.</summary>
public sealed record LongDocumentOptions
{
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public string[] Mechanisms { get; init; } = { "linear_relu", "hedgehog", "softmax" };
    /// <summary>Tokens of the one document (MaxSequenceLength): 131,072 by default, at most
    /// <see cref="LinearAttentionOptions.MaxSupportedSequenceLength"/> (1,048,576).</summary>
    public int Length { get; init; } = 131072;
    public int Layers { get; init; } = 12;
    public int Hidden { get; init; } = 768;
    public int Heads { get; init; } = 12;
    /// <summary>Wall-clock bound of one mechanism (Fit and Transform, in its own process); past it the process is ended.</summary>
    public double SecondsPerMechanism { get; init; } = 1200;
    /// <summary>Wall-clock bound of the whole command (0 = none): a mechanism gets what is left of it when less than its own bound.</summary>
    public double BudgetSeconds { get; init; }
    public string? Device { get; init; }
    public string? Child { get; init; }
    public string Commit { get; init; } = "unknown";
    public string Machine { get; init; } = "unknown";
    public string CommandLine { get; init; } = "";

    public static LongDocumentOptions Parse(string[] args)
    {
        var o = new LongDocumentOptions { CommandLine = "bench long-documents " + string.Join(' ', args.Select(a => a.Contains(' ') ? $"\"{a}\"" : a)) };
        for (int i = 0; i < args.Length; i++)
        {
            string flag = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {flag} needs a value.");
            int Int(string v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{flag}: '{v}' is not a positive integer.");
            o = flag switch
            {
                "--out" => o with { OutputDirectory = Value() },
                "--mechanisms" => o with { Mechanisms = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) },
                "--length" => o with { Length = Int(Value()) },
                "--layers" => o with { Layers = Int(Value()) },
                "--hidden" => o with { Hidden = Int(Value()) },
                "--heads" => o with { Heads = Int(Value()) },
                "--seconds" => o with { SecondsPerMechanism = Int(Value()) },
                "--budget" => o with { BudgetSeconds = Int(Value()) },
                "--device" => o with { Device = Value() is var d && d is "cpu" or "cuda" ? d : throw new ArgumentException($"--device {d}: use cpu or cuda.") },
                "--child" => o with { Child = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                _ => throw new ArgumentException($"Unknown option '{flag}' for bench long-documents."),
            };
        }
        if (o.Mechanisms.Length == 0) throw new ArgumentException("--mechanisms names no mechanism; use e.g. --mechanisms linear_relu,softmax.");
        // Refused here, not after a child process has built a model of this size.
        foreach (var m in o.Mechanisms) BenchmarkMechanism.Parse(m, o.Layers, "3:1", "hedgehog");   // names an unknown one
        if (o.Length is < 8 or > LinearAttentionOptions.MaxSupportedSequenceLength)
            throw new ArgumentException($"--length {o.Length}: the estimators' MaxSequenceLength lies in 8..{LinearAttentionOptions.MaxSupportedSequenceLength} " +
                                        "(LinearAttentionOptions.MaxSupportedSequenceLength, with the rotary positions this benchmark uses); give a length in that range.");
        if (o.Hidden % o.Heads != 0) throw new ArgumentException($"--hidden {o.Hidden} must be a multiple of --heads {o.Heads}.");
        if (o.Commit == "unknown") o = o with { Commit = TrainingBenchmarkOptions.Detect("git", "rev-parse --short HEAD") ?? "unknown" };
        if (o.Machine == "unknown") o = o with { Machine = new TrainingBenchmarkOptions().Machine };
        return o;
    }
}

/// <summary>
/// `bench long-documents`: one document of <see cref="LongDocumentOptions.Length"/> tokens through the public API —
/// TextClassification Fit for one optimizer step (batch of one document, activation checkpointing) and Transform of
/// the document — for each mechanism in its own process, BERT-base shape by default; seconds and peak memory, or the
/// error (out of memory) or the time bound the mechanism ran into. Writes long-documents.md and .json.
/// </summary>
public static class LongDocumentBenchmark
{
    private sealed record Result(string Mechanism, string Status, double? FitSeconds, double? ScoreSeconds, double? PeakGiB, int? Tokens, string? Error);

    public static int Run(LongDocumentOptions o, TextWriter log)
    {
        if (o.Child is { } mechanism) return RunChild(o, mechanism, log);
        TorchRuntime.EnsureLoaded();
        string device = o.Device ?? (torch.cuda.is_available() ? "cuda" : "cpu");
        log.WriteLine($"bench long-documents on {device} ({o.Machine}), commit {o.Commit}: one document of {o.Length:N0} tokens, {o.Layers} layers × {o.Hidden} × {o.Heads} heads");
        var results = new List<Result>();
        var clock = Stopwatch.StartNew();
        foreach (var m in o.Mechanisms)
        {
            double bound = o.BudgetSeconds > 0 ? Math.Min(o.SecondsPerMechanism, Math.Max(1, o.BudgetSeconds - clock.Elapsed.TotalSeconds)) : o.SecondsPerMechanism;
            var result = RunIsolated(o with { Device = device, SecondsPerMechanism = Math.Round(bound) }, m, log);
            results.Add(result);
            log.WriteLine($"{m,-12} {result.Status}: fit {Seconds(result.FitSeconds)}, transform {Seconds(result.ScoreSeconds)}, peak {Gib(result.PeakGiB)}{(result.Error is null ? "" : " — " + result.Error)}");
        }
        Write(o with { Device = device }, results);
        log.WriteLine($"wrote long-documents.md and long-documents.json to {o.OutputDirectory}");
        return results.Any(r => r.Status == "ok") ? 0 : 1;
    }

    private static string Seconds(double? s) => s is { } v ? v.ToString("F1", CultureInfo.InvariantCulture) + " s" : "—";
    private static string Gib(double? g) => g is { } v ? v.ToString("F1", CultureInfo.InvariantCulture) + " GiB" : "—";

    private static Result RunIsolated(LongDocumentOptions o, string mechanism, TextWriter log)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown.");
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase)) psi.ArgumentList.Add(typeof(LongDocumentBenchmark).Assembly.Location);
        foreach (var a in new[] { "bench", "long-documents", "--child", mechanism, "--length", I(o.Length), "--layers", I(o.Layers), "--hidden", I(o.Hidden),
                     "--heads", I(o.Heads), "--device", o.Device!, "--commit", o.Commit, "--machine", o.Machine })
            psi.ArgumentList.Add(a);
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {exe}.");
        string? line = null;
        var errors = new StringBuilder();
        child.OutputDataReceived += (_, e) => { if (e.Data?.StartsWith("{", StringComparison.Ordinal) == true) line = e.Data; };
        child.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        if (!child.WaitForExit(TimeSpan.FromSeconds(o.SecondsPerMechanism)))
        {
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            return new Result(mechanism, "time bound", null, null, null, null, $"did not finish Fit and Transform within {o.SecondsPerMechanism:N0} s; the process was ended");
        }
        child.WaitForExit();
        if (line is not null) return JsonSerializer.Deserialize<Result>(line)!;
        string last = errors.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? $"exit code {child.ExitCode}";
        return new Result(mechanism, "failed", null, null, null, null, $"the process ended (exit code {child.ExitCode}): {last}");
    }

    private static string I(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static int RunChild(LongDocumentOptions o, string mechanism, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = o.Device == "cuda";
        var probe = cuda ? new CudaMemoryProbe(0) : null;
        var ml = new MLContext(seed: 1) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = !cuda };
        // Two documents (both classes present); one optimizer step on one of them.
        var data = ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows(2, o.Length, seed: 5).Select((r, i) => new BenchmarkRow { Text = r.Text, Label = (uint)i }).ToList());
        var options = new TextClassificationOptions
        {
            TextColumnNames = new[] { nameof(BenchmarkRow.Text) },
            LayerPlan = BenchmarkMechanism.Parse(mechanism, o.Layers, "3:1", "hedgehog").Layers,   // linear_relu etc. as `bench training` names them
            ModelDimension = o.Hidden, NumberOfLayers = o.Layers, NumberOfHeads = o.Heads, MaxSequenceLength = o.Length,
            BatchSize = 1, MaxBatchTokens = o.Length, MaxEpochs = 1, MaxSteps = 1, ValidationFraction = 0, EarlyStoppingPatience = 0,
            ActivationCheckpointing = true, InferenceBatchSize = 1, Seed = 1, LogEverySteps = 0,
        };
        Result result;
        try
        {
            var clock = Stopwatch.StartNew();
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options).Fit(data);
            double fit = clock.Elapsed.TotalSeconds;
            clock.Restart();
            var scored = model.Transform(ml.Data.LoadFromEnumerable(SyntheticCorpus.Rows(1, o.Length, seed: 6)));
            var scores = scored.GetColumn<float[]>("Score").Single();
            double score = clock.Elapsed.TotalSeconds;
            if (!scores.All(float.IsFinite)) throw new InvalidOperationException("the document's scores are not finite");
            double peak = (probe?.PeakBytes() ?? Process.GetCurrentProcess().PeakWorkingSet64) / (1024.0 * 1024 * 1024);
            int tokens = model.TrainingReport?.TokensSeen is { } seen ? (int)seen : o.Length;
            result = new Result(mechanism, "ok", fit, score, peak, tokens, null);
        }
        catch (Exception e)
        {
            var inner = e is AggregateException { InnerException: { } ie } ? ie : e;
            bool oom = inner.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) || inner is OutOfMemoryException;
            result = new Result(mechanism, oom ? "out of memory" : "failed", null, null, null, null, inner.GetType().Name + ": " + inner.Message.Split('\n')[0]);
        }
        log.WriteLine(JsonSerializer.Serialize(result));
        return 0;
    }

    private static void Write(LongDocumentOptions o, List<Result> results)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        var md = GeneratedMarkdown.Header(new StringBuilder(), "One long document: Fit and Transform", GeneratedMarkdown.SamplesCommand(o.CommandLine));
        md.AppendLine($"- commit: `{o.Commit}`; machine: {o.Machine}; device: {o.Device}; libtorch {torch.__version__}; {DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture)}");
        md.AppendLine($"- one document of {o.Length:N0} tokens (synthetic English, bert-base-uncased WordPiece), TextClassification with {o.Layers} layers × hidden {o.Hidden} × {o.Heads} heads " +
                      "(BERT-base shape), the estimator's precision default; Fit = one optimizer step on the document with activation checkpointing (model build and tokenization included); " +
                      "Transform = scoring the document once. Each mechanism runs in its own process.");
        md.AppendLine($"- peak memory: {(o.Device == "cuda" ? "the CUDA allocator's peak" : "the process's peak resident memory")}; a mechanism past its time bound " +
                      $"({o.SecondsPerMechanism:N0} s{(o.BudgetSeconds > 0 ? $", or what was left of the command's {o.BudgetSeconds:N0} s" : "")}) is ended and marked.");
        md.AppendLine().AppendLine("| mechanism | status | Fit s | Transform s | peak GiB | note |").AppendLine("| --- | --- | ---: | ---: | ---: | --- |");
        foreach (var r in results)
            md.AppendLine($"| {r.Mechanism} | {r.Status} | {r.FitSeconds?.ToString("F1", CultureInfo.InvariantCulture) ?? "—"} | {r.ScoreSeconds?.ToString("F1", CultureInfo.InvariantCulture) ?? "—"} | " +
                          $"{r.PeakGiB?.ToString("F1", CultureInfo.InvariantCulture) ?? "—"} | {r.Error ?? (r.Tokens is { } t ? $"{t:N0} tokens trained" : "")} |");
        File.WriteAllText(Path.Combine(o.OutputDirectory, "long-documents.md"), md.ToString());
        var json = JsonSerializer.Serialize(new { meta = new { commit = o.Commit, machine = o.Machine, device = o.Device, length = o.Length, layers = o.Layers, hidden = o.Hidden, heads = o.Heads, command = o.CommandLine }, results },
            new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(Path.Combine(o.OutputDirectory, "long-documents.json"), json);
    }
}

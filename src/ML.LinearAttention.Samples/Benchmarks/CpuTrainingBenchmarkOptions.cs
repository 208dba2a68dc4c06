using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench cpu-training`.</summary>
public sealed record CpuTrainingBenchmarkOptions
{
    public string DataFolder { get; init; } = Path.Combine("..", "shared", "data");
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    /// <summary>minilm-full and/or default.</summary>
    public string[] Workloads { get; init; } = { "minilm-full", "default" };
    /// <summary>baseline (the CPU fast paths off, fp32), optimized (the fast paths on, fp32) and/or bf16 (the fast paths
    /// on, Precision BFloat16); they alternate within each repeat.</summary>
    public string[] Variants { get; init; } = { "baseline", "optimized", "bf16" };
    public int TrainRows { get; init; } = 2048;
    public int WarmupSteps { get; init; } = 2;
    public int Steps { get; init; } = 8;
    public int Repeats { get; init; } = 3;
    /// <summary>libtorch CPU thread counts to measure each variant with (CpuThreads of the options; 0 = leave the process
    /// setting, all cores unless the application changed it).</summary>
    public int[] Threads { get; init; } = { 0 };
    public string Backbone { get; init; } = "all-MiniLM-L6-v2";
    public int Seed { get; init; } = 1;
    /// <summary>The tools/cpu-baseline harness DLL built against the older library (tools/cpu-baseline/build.sh df3f3f1 prints its
    /// path); with <see cref="CurrentHarness"/>, the run also measures both builds, alternating (<see cref="CpuTrainingBuilds"/>).</summary>
    public string? BaselineHarness { get; init; }
    /// <summary>The same harness built against the current tree (tools/cpu-baseline/build.sh HEAD).</summary>
    public string? CurrentHarness { get; init; }
    /// <summary>Precision settings the builds are compared at: auto (each build's default), fp32 and/or bf16.</summary>
    public string[] HarnessPrecisions { get; init; } = { "auto" };
    private string? _commit, _machine;
    public string Commit { get => _commit ??= TrainingBenchmarkOptions.Detect("git", "rev-parse --short HEAD") ?? "unknown"; init => _commit = value; }
    public string Machine { get => _machine ??= $"{Environment.ProcessorCount} CPU cores ({CpuModel()}), {System.Runtime.InteropServices.RuntimeInformation.OSDescription}"; init => _machine = value; }
    public string CommandLine { get; init; } = "";

    public static CpuTrainingBenchmarkOptions Parse(string[] args)
    {
        var o = new CpuTrainingBenchmarkOptions { CommandLine = "bench cpu-training " + string.Join(' ', args) };
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Int(string v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"'{v}' is not a positive integer.");
            string[] List(string v, string[] allowed, string option)
            {
                var items = v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                var bad = items.FirstOrDefault(x => !allowed.Contains(x));
                if (items.Length == 0 || bad is not null) throw new ArgumentException($"{option} '{v}': use a comma-separated list of {string.Join(", ", allowed)}.");
                return items;
            }
            o = args[i] switch
            {
                "--data-folder" => o with { DataFolder = Value() },
                "--out" => o with { OutputDirectory = Value() },
                "--workloads" => o with { Workloads = List(Value(), new[] { "minilm-full", "default" }, "--workloads") },
                "--variants" => o with { Variants = List(Value(), CpuTrainingVariants.Names, "--variants") },
                "--rows" => o with { TrainRows = Int(Value()) },
                "--warmup" => o with { WarmupSteps = Int(Value()) },
                "--steps" => o with { Steps = Int(Value()) },
                "--repeats" => o with { Repeats = Int(Value()) },
                "--threads" => o with { Threads = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Int).ToArray() },
                "--backbone" => o with { Backbone = Value() },
                "--seed" => o with { Seed = Int(Value()) },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                "--baseline-harness" => o with { BaselineHarness = Value() },
                "--current-harness" => o with { CurrentHarness = Value() },
                "--harness-precisions" => o with { HarnessPrecisions = List(Value(), CpuTrainingBuilds.Precisions, "--harness-precisions") },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench cpu-training."),
            };
        }
        if (o.Threads.Length == 0) throw new ArgumentException("--threads lists no thread count.");
        if ((long)(o.WarmupSteps + o.Steps) * 32 > o.TrainRows)
            throw new ArgumentException($"--rows {o.TrainRows} is too few for {o.WarmupSteps} warm-up and {o.Steps} timed steps of 32 rows; raise --rows to at least {(o.WarmupSteps + o.Steps) * 32}.");
        CheckHarnesses(o);
        return o;
    }

    /// <summary>Both harnesses or neither, each an existing file.</summary>
    private static void CheckHarnesses(CpuTrainingBenchmarkOptions o)
    {
        if (o.BaselineHarness is null && o.CurrentHarness is null) return;
        if (o.BaselineHarness is null || o.CurrentHarness is null)
            throw new ArgumentException($"{(o.BaselineHarness is null ? "--current-harness" : "--baseline-harness")} needs {(o.BaselineHarness is null ? "--baseline-harness" : "--current-harness")} too: " +
                                        "the builds are compared through the same harness, built by tools/cpu-baseline/build.sh df3f3f1 (baseline) and tools/cpu-baseline/build.sh HEAD (current).");
        foreach (var (option, path) in new[] { ("--baseline-harness", o.BaselineHarness), ("--current-harness", o.CurrentHarness) })
            if (!File.Exists(path))
                throw new ArgumentException($"{option} '{path}' does not exist: build the harness with tools/cpu-baseline/build.sh <commit> (it prints the DLL's path) and pass that path.");
    }

    private static string CpuModel()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "unknown CPU"; }
        catch (IOException) { return "unknown CPU"; }
    }
}

using System.Diagnostics;
using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench training` and `bench inference`.</summary>
public sealed record TrainingBenchmarkOptions
{
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    /// <summary>Comma-separated mechanisms (see <see cref="BenchmarkMechanism.ParseList"/>).</summary>
    public string Mechanisms { get; init; } = "softmax,hedgehog,linear_relu,hybrid,simple_gla,gated_deltanet";
    public string HybridPlan { get; init; } = "3:1";
    public string HybridBase { get; init; } = "hedgehog";
    public long[] Lengths { get; init; } = { 512, 2048, 8192, 16384, 32768, 65536 };
    /// <summary>Tokens per optimizer step (training) or per forward pass (inference); B = tokens / T.</summary>
    public long TokensPerStep { get; init; } = 65536;
    public int Layers { get; init; } = 12;
    public int Hidden { get; init; } = 768;
    public int Heads { get; init; } = 12;
    public double Dropout { get; init; } = 0.1;
    /// <summary>Steps run before timing starts (allocator, cuBLAS/cuDNN selection, optimizer state).</summary>
    public int WarmupSteps { get; init; } = 2;
    /// <summary>Timed steps (fewer when the point's time bound is reached first).</summary>
    public int Steps { get; init; } = 4;
    /// <summary>Wall-clock bound of one point (model build included); a point over it stops early or is skipped.</summary>
    public double SecondsPerPoint { get; init; } = 25;
    /// <summary>Wall-clock bound of the whole command; the points left when it is reached are skipped (0 = none).</summary>
    public double BudgetSeconds { get; init; }
    /// <summary>Copies batches to the GPU from pinned memory, asynchronously (<see cref="Training.BatchTransfer.UsePinnedMemory"/>).</summary>
    public bool PinnedMemory { get; init; } = true;
    public bool ActivationCheckpointing { get; init; }
    /// <summary>Isolated runs only: a point out of memory (or a process that died) is measured again in a fresh process
    /// with activation checkpointing, which then stays on for that mechanism's longer lengths.</summary>
    public bool CheckpointOnOom { get; init; } = true;
    /// <summary>Each mechanism in its own child process (null = on CUDA only): an out-of-memory error or a native abort
    /// then loses one point, not the run.</summary>
    public bool? Isolate { get; init; }
    /// <summary>Set in a child process: append each point as a JSON line to this file (and write no report).</summary>
    public string? ChildResults { get; init; }
    /// <summary>For tests of the isolated runs: "oom@T" reports out of memory at length T, "exit@T" ends the process
    /// there (both only without activation checkpointing).</summary>
    public string? SimulatedFailure { get; init; }
    /// <summary>Dense bf16 peak of the GPU for model FLOP utilisation (H200 SXM datasheet: 989 TFLOP/s).</summary>
    public double PeakTflops { get; init; } = 989;
    public string? Device { get; init; }
    private string? _commit, _machine;
    /// <summary>Recorded in the outputs; detected with git when not given (and only when used).</summary>
    public string Commit { get => _commit ??= Detect("git", "rev-parse --short HEAD") ?? "unknown"; init => _commit = value; }
    /// <summary>Recorded in the outputs; detected with nvidia-smi and python3 when not given (and only when used).</summary>
    public string Machine { get => _machine ??= DefaultMachine(); init => _machine = value; }
    public string CommandLine { get; init; } = "";
    /// <summary>Inference only: rows of one timed pass (at least 8 full forward passes).</summary>
    public int InferenceRows { get; init; } = 0;
    /// <summary>Inference only: the timed passes repeat until this many seconds have passed, so that a fast point is not
    /// timed over a fraction of a second (where one late batch or a lazy first use halves its rate).</summary>
    public double InferenceSeconds { get; init; } = 3;
    /// <summary>Inference only: allow TF32 tensor cores for fp32 matmuls (libtorch's default is off).</summary>
    public bool Tf32 { get; init; }
    /// <summary>Inference only: scoring precisions, comma-separated (fp32, bf16, fp16, auto); null = fp32,bf16 on CUDA, fp32 on the CPU.</summary>
    public string? Precisions { get; init; }
    /// <summary>Inference only: the folder holding ag-news/ (a copy of ../shared/data) for the agreement of each precision with fp32.</summary>
    public string DataFolder { get; init; } = Path.Combine("..", "shared", "data");
    /// <summary>Inference only: real rows the agreement model trains on (0 = no agreement measured).</summary>
    public int AgreementTrainRows { get; init; } = 4000;
    /// <summary>Inference only: held-out real rows scored at every precision for the agreement.</summary>
    public int AgreementRows { get; init; } = 1000;

    /// <summary>Parses the arguments after `bench training` / `bench inference`.</summary>
    public static TrainingBenchmarkOptions Parse(string command, string[] args, TrainingBenchmarkOptions? defaults = null)
    {
        var o = (defaults ?? new TrainingBenchmarkOptions()) with { CommandLine = $"bench {command} " + string.Join(' ', args.Select(Quote)) };
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            long[] Longs(string v) => v.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => ParseLength(s, v)).ToArray();
            int Int(string v) => int.TryParse(v, out int n) && n >= 0 ? n : throw new ArgumentException($"'{v}' is not a non-negative integer.");
            double Double(string v) => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d >= 0
                ? d : throw new ArgumentException($"'{v}' is not a non-negative number.");
            o = args[i] switch
            {
                "--out" => o with { OutputDirectory = Value() },
                "--mechanisms" => o with { Mechanisms = Value() },
                "--hybrid" => o with { HybridPlan = Value() },
                "--hybrid-base" => o with { HybridBase = Value() },
                "--lengths" => o with { Lengths = Longs(Value()) },
                "--tokens" => o with { TokensPerStep = Longs(Value()).Single() },
                "--layers" => o with { Layers = Int(Value()) },
                "--hidden" => o with { Hidden = Int(Value()) },
                "--heads" => o with { Heads = Int(Value()) },
                "--dropout" => o with { Dropout = Double(Value()) },
                "--warmup" => o with { WarmupSteps = Int(Value()) },
                "--steps" => o with { Steps = Int(Value()) },
                "--seconds" => o with { SecondsPerPoint = Double(Value()) },
                "--budget" => o with { BudgetSeconds = Double(Value()) },
                "--no-pinned" => o with { PinnedMemory = false },
                "--checkpointing" => o with { ActivationCheckpointing = true },
                "--no-oom-checkpointing" => o with { CheckpointOnOom = false },
                "--isolate" => o with { Isolate = true },
                "--in-process" => o with { Isolate = false },
                "--child-results" => o with { ChildResults = Value(), Isolate = false },
                "--simulate-failure" => o with { SimulatedFailure = Value() },
                "--peak-tflops" => o with { PeakTflops = Double(Value()) },
                "--device" => o with { Device = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                "--rows" => o with { InferenceRows = Int(Value()) },
                "--timed-seconds" => o with { InferenceSeconds = Double(Value()) },
                "--tf32" => o with { Tf32 = true },
                "--precision" => o with { Precisions = Value() },
                "--data-folder" => o with { DataFolder = Value() },
                "--agreement-train" => o with { AgreementTrainRows = Int(Value()) },
                "--agreement-rows" => o with { AgreementRows = Int(Value()) },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench {command}."),
            };
        }
        if (o.Layers < 1 || o.Hidden < 1 || o.Heads < 1 || o.Hidden % o.Heads != 0)
            throw new ArgumentException($"--hidden {o.Hidden} must be a positive multiple of --heads {o.Heads}, and --layers at least 1.");
        if (o.Steps < 1) throw new ArgumentException("--steps must be at least 1.");
        if (o.Lengths.Length == 0) throw new ArgumentException("--lengths lists no length.");
        if (o.Device is not null and not "cpu" and not "cuda") throw new ArgumentException($"--device {o.Device}: use cpu or cuda.");
        if (o.Precisions is not null && o.Precisions.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is var list)
        {
            if (list.Length == 0) throw new ArgumentException("--precision lists no precision: give fp32, bf16, fp16 or auto, comma-separated.");
            foreach (var p in list) Training.ScoringPrecision.Parse(p); // names the bad one
        }
        return o;
    }

    /// <summary>512, 2048, 2K, 64K (K = 1024).</summary>
    private static long ParseLength(string s, string list)
    {
        s = s.Trim();
        long factor = s.EndsWith('K') || s.EndsWith('k') ? 1024 : 1;
        if (factor > 1) s = s[..^1];
        return long.TryParse(s, out long n) && n > 0 ? n * factor : throw new ArgumentException($"'{s}' is not a positive integer (in '{list}').");
    }

    private static string Quote(string a) => a.Length == 0 || a.Any(c => char.IsWhiteSpace(c) || c is '"' or '{' or '}' or ';') ? "'" + a + "'" : a;

    /// <summary>GPU name and driver (nvidia-smi), CPU cores and OS, when they can be read.</summary>
    private static string DefaultMachine()
    {
        var gpu = Detect("nvidia-smi", "--query-gpu=name,driver_version --format=csv,noheader");
        string cpu = $"{Environment.ProcessorCount} CPU cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}";
        if (gpu is null) return cpu;
        var lines = gpu.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var first = lines[0].Split(',');
        // With -p:TorchBackend=external the libtorch is the machine's PyTorch (TorchSharp reports the version it was built for).
        var pytorch = Detect("python3", "-c \"import torch; print(torch.__version__)\"");
        return $"{lines.Length} × {first[0].Trim()} (driver {first.Last().Trim()}){(pytorch is null ? "" : $", PyTorch {pytorch} libtorch")}, {cpu}";
    }

    internal static string? Detect(string file, string arguments)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (p is null) return null;
            string text = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(5000) || p.ExitCode != 0) return null;
            text = text.Trim();
            return text.Length == 0 ? null : text;
        }
        catch (Exception) { return null; }
    }
}

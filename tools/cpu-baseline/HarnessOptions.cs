using System.Globalization;

namespace Microsoft.ML.LinearAttention.CpuBaseline;

/// <summary>Command-line options of the harness (one fit per process).</summary>
public sealed record HarnessOptions
{
    /// <summary>The workloads of `bench cpu-training`.</summary>
    public static readonly string[] Workloads = { "minilm-full", "default" };
    /// <summary>The precision settings: the options' Precision left at Auto (each build's own default), Float32 or BFloat16.</summary>
    public static readonly string[] Precisions = { "auto", "fp32", "bf16" };

    /// <summary>What the harness prints when its arguments are wrong.</summary>
    public const string Usage =
        "usage: dotnet CpuBaseline.dll --rows-file <rows.jsonl> [--workload minilm-full|default] [--precision auto|fp32|bf16] " +
        "[--warmup 2] [--steps 8] [--threads 0] [--seed 1] [--backbone all-MiniLM-L6-v2]\n" +
        "rows.jsonl holds one {\"Text\": …, \"Label\": …} object a line (bench cpu-training writes it). " +
        "Prints one line: CPU-BASELINE-RESULT {json}.";

    /// <summary>JSON lines of training rows (Text, Label), the same file for both builds.</summary>
    public string RowsFile { get; init; } = "";
    /// <summary>minilm-full (PretrainedBackbone, FineTuning full, lr 1e-4, MaxSequenceLength 128) or default.</summary>
    public string Workload { get; init; } = "minilm-full";
    /// <summary>auto, fp32 or bf16.</summary>
    public string Precision { get; init; } = "auto";
    /// <summary>Optimizer steps before the timed ones.</summary>
    public int WarmupSteps { get; init; } = 2;
    /// <summary>Timed optimizer steps.</summary>
    public int Steps { get; init; } = 8;
    /// <summary>libtorch CPU threads (the options' CpuThreads); 0 = leave the process setting.</summary>
    public int Threads { get; init; }
    /// <summary>Seed of the MLContext and the options.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>The pretrained backbone of minilm-full.</summary>
    public string Backbone { get; init; } = "all-MiniLM-L6-v2";

    /// <summary>Parses <paramref name="args"/>; an <see cref="ArgumentException"/> names the bad one.</summary>
    public static HarnessOptions Parse(string[] args)
    {
        var o = new HarnessOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Int(string v, int min) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min
                ? n : throw new ArgumentException($"'{v}' is not an integer ≥ {min}.");
            string OneOf(string v, string[] allowed, string option) =>
                allowed.Contains(v) ? v : throw new ArgumentException($"{option} '{v}': use one of {string.Join(", ", allowed)}.");
            o = args[i] switch
            {
                "--rows-file" => o with { RowsFile = Value() },
                "--workload" => o with { Workload = OneOf(Value(), Workloads, "--workload") },
                "--precision" => o with { Precision = OneOf(Value(), Precisions, "--precision") },
                "--warmup" => o with { WarmupSteps = Int(Value(), 1) },
                "--steps" => o with { Steps = Int(Value(), 1) },
                "--threads" => o with { Threads = Int(Value(), 0) },
                "--seed" => o with { Seed = Int(Value(), 0) },
                "--backbone" => o with { Backbone = Value() },
                _ => throw new ArgumentException($"Unknown option '{args[i]}'."),
            };
        }
        if (o.RowsFile.Length == 0) throw new ArgumentException("--rows-file is required.");
        if (!File.Exists(o.RowsFile)) throw new ArgumentException($"--rows-file '{o.RowsFile}' does not exist.");
        return o;
    }
}

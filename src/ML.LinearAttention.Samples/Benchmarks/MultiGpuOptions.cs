using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Options of `bench multigpu` (see <see cref="MultiGpuBenchmark"/>), including the hidden ones of its child processes.</summary>
public sealed record MultiGpuOptions
{
    public int Gpus { get; init; } = 2;
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public string[] Mechanisms { get; init; } = { "linear_relu", "hedgehog" };
    /// <summary>T of the data-parallel runs.</summary>
    public long Length { get; init; } = 2048;
    /// <summary>Tokens per optimizer step per GPU (data parallel; weak scaling: the global batch grows with the GPUs).</summary>
    public long TokensPerGpu { get; init; } = 65536;
    /// <summary>Sequence lengths of the sequence-parallel runs (the whole sequence; each of W GPUs holds T / W).</summary>
    public long[] SpLengths { get; init; } = { 65536, 131072 };
    /// <summary>Sequences per step of every sequence-parallel run (fixed, so W GPUs at T hold as many tokens each as one GPU at T / W).</summary>
    public int SpBatch { get; init; } = 1;
    public int Layers { get; init; } = 12;
    public int Hidden { get; init; } = 768;
    public int Heads { get; init; } = 12;
    public int Warmup { get; init; } = 2;
    public int Steps { get; init; } = 4;
    public bool Verify { get; init; }
    public bool SkipSequenceParallel { get; init; }
    public bool SkipDataParallel { get; init; }
    public string? Device { get; init; }
    public string? CommitArg { get; init; }
    public string? MachineArg { get; init; }
    public string CommandLine { get; init; } = "";
    /// <summary>Per-child time limit in seconds.</summary>
    public double ChildSeconds { get; init; } = 240;

    // ---- hidden: a child process is one rank of one run ----
    public int? Rank { get; init; }
    public int World { get; init; } = 1;
    public string? IdFile { get; init; }
    public string? Role { get; init; }          // dp:<mechanism> | sp:<T> | verify
    public string? ChildResults { get; init; }

    public string Commit => CommitArg ?? TrainingBenchmarkOptions.Detect("git", "rev-parse --short HEAD") ?? "unknown";
    public string Machine => MachineArg ?? new TrainingBenchmarkOptions().Machine;

    /// <summary>The matching `bench training` options (for the encoder configuration).</summary>
    internal TrainingBenchmarkOptions AsTraining() => new() { Layers = Layers, Hidden = Hidden, Heads = Heads, Dropout = 0.1 };

    public static MultiGpuOptions Parse(string[] args)
    {
        var o = new MultiGpuOptions { CommandLine = "bench multigpu " + string.Join(' ', args) };
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : throw new ArgumentException($"{args[i - 1]} needs an integer.");
            o = args[i] switch
            {
                "--gpus" => o with { Gpus = Int() },
                "--out" => o with { OutputDirectory = Value() },
                "--mechanisms" => o with { Mechanisms = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--length" => o with { Length = ParseLength(Value()) },
                "--tokens" => o with { TokensPerGpu = ParseLength(Value()) },
                "--sp-lengths" => o with { SpLengths = Value().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(ParseLength).ToArray() },
                "--sp-batch" => o with { SpBatch = Int() },
                "--layers" => o with { Layers = Int() },
                "--hidden" => o with { Hidden = Int() },
                "--heads" => o with { Heads = Int() },
                "--warmup" => o with { Warmup = Int() },
                "--steps" => o with { Steps = Int() },
                "--verify" => o with { Verify = true },
                "--no-sp" => o with { SkipSequenceParallel = true },
                "--no-dp" => o with { SkipDataParallel = true },
                "--device" => o with { Device = Value() },
                "--commit" => o with { CommitArg = Value() },
                "--machine" => o with { MachineArg = Value() },
                "--child-seconds" => o with { ChildSeconds = Int() },
                "--rank" => o with { Rank = Int() },
                "--world" => o with { World = Int() },
                "--id-file" => o with { IdFile = Value() },
                "--role" => o with { Role = Value() },
                "--child-results" => o with { ChildResults = Value() },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench multigpu."),
            };
        }
        if (o.Gpus < 1) throw new ArgumentException($"--gpus {o.Gpus}: at least 1.");
        if (o.Layers < 1 || o.Hidden < 1 || o.Heads < 1 || o.Hidden % o.Heads != 0)
            throw new ArgumentException($"--hidden {o.Hidden} must be a positive multiple of --heads {o.Heads}, and --layers at least 1.");
        if (o.SpBatch < 1) throw new ArgumentException("--sp-batch must be at least 1.");
        if (o.Steps < 1 || o.Warmup < 1) throw new ArgumentException("--steps and --warmup must be at least 1.");
        if (o.Device is not null and not "cpu" and not "cuda") throw new ArgumentException($"--device {o.Device}: use cpu or cuda.");
        if (o.SpLengths.Any(t => t < o.Gpus)) throw new ArgumentException($"--sp-lengths: every length must be at least the number of GPUs ({o.Gpus}).");
        return o;
    }

    private static long ParseLength(string s)
    {
        s = s.Trim();
        long factor = s.EndsWith('K') || s.EndsWith('k') ? 1024 : 1;
        var digits = factor > 1 ? s[..^1] : s;
        return long.TryParse(digits, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) && n > 0 ? n * factor : throw new ArgumentException($"'{s}' is not a positive length.");
    }
}

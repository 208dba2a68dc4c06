using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench quality`. <c>--size</c> picks a preset; the other flags override it.</summary>
public sealed record QualityBenchmarkOptions
{
    public string Dataset { get; init; } = "sst2";
    public string DataFolder { get; init; } = Path.Combine("..", "shared", "data");
    public string Size { get; init; } = "small";
    public int TrainRows { get; init; } = 512;
    public int TestRows { get; init; } = 400;
    public int Epochs { get; init; } = 1;
    public int BatchSize { get; init; } = 16;
    /// <summary>Tokens per row; null = 64 for sst2 (short sentences), 128 for ag-news (title + description).</summary>
    public int? MaxLength { get; init; }

    /// <summary>The MaxSequenceLength the rows are trained with.</summary>
    public int EffectiveMaxLength => MaxLength ?? (Dataset == "ag-news" ? 128 : 64);
    public double LearningRate { get; init; } = 1e-4;
    public double ProbeLearningRate { get; init; } = 1e-3;
    public double LoraLearningRate { get; init; } = 5e-4;
    public double ScratchLearningRate { get; init; } = 1e-3;
    public int TransferSteps { get; init; } = 30;
    public string Backbone { get; init; } = "all-MiniLM-L6-v2";
    public string ConvertTo { get; init; } = "hedgehog";
    public string[]? Only { get; init; }
    public string? Device { get; init; }
    public int? Threads { get; init; }
    public int Seed { get; init; } = 1;
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public string Commit { get; init; } = "unknown";
    public string Machine { get; init; } = "unknown";
    public string CommandLine { get; init; } = "";

    /// <summary>Row keys of the table, in order (for --only).</summary>
    public static readonly string[] RowKeys = { "full", "probe", "mp", "mp+", "lora", "converted", "converted+lora", "scratch" };

    private static QualityBenchmarkOptions Preset(string size, QualityBenchmarkOptions o) => size switch
    {
        // CPU smoke size: a few minutes on 2 cores; numbers are noisy and only show the command works.
        "small" => o with { Size = size, TrainRows = 512, TestRows = 400, Epochs = 1, BatchSize = 16, TransferSteps = 30 },
        // A few minutes on one GPU.
        "medium" => o with { Size = size, TrainRows = 8000, TestRows = 872, Epochs = 2, BatchSize = 32, TransferSteps = 300 },
        // The whole training split (SST-2: 60,614 rows; AG News: 6,000), the whole test split.
        "full" => o with { Size = size, TrainRows = int.MaxValue, TestRows = int.MaxValue, Epochs = 3, BatchSize = 32, TransferSteps = 1000 },
        _ => throw new ArgumentException($"--size {size} is not supported; use small, medium or full."),
    };

    public static QualityBenchmarkOptions Parse(string[] args)
    {
        var o = new QualityBenchmarkOptions { CommandLine = "bench quality " + string.Join(' ', args.Select(a => a.Contains(' ') ? $"\"{a}\"" : a)) };
        int sizeAt = Array.IndexOf(args, "--size");
        if (sizeAt >= 0) o = Preset(sizeAt + 1 < args.Length ? args[sizeAt + 1] : throw new ArgumentException("Option --size needs a value."), o);
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int Int(string v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"'{v}' is not a positive integer.");
            double Double(string v) => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0 ? d : throw new ArgumentException($"'{v}' is not a positive number.");
            o = args[i] switch
            {
                "--size" => o with { Size = Value() },
                "--data" => o with { Dataset = Value() },
                "--data-folder" => o with { DataFolder = Value() },
                "--train" => o with { TrainRows = Int(Value()) },
                "--test" => o with { TestRows = Int(Value()) },
                "--epochs" => o with { Epochs = Int(Value()) },
                "--batch" => o with { BatchSize = Int(Value()) },
                "--max-length" => o with { MaxLength = Int(Value()) },
                "--lr" => o with { LearningRate = Double(Value()) },
                "--probe-lr" => o with { ProbeLearningRate = Double(Value()) },
                "--lora-lr" => o with { LoraLearningRate = Double(Value()) },
                "--scratch-lr" => o with { ScratchLearningRate = Double(Value()) },
                "--transfer-steps" => o with { TransferSteps = Int(Value()) },
                "--backbone" => o with { Backbone = Value() },
                "--convert-to" => o with { ConvertTo = Value() },
                "--only" => o with { Only = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--device" => o with { Device = Value() },
                "--threads" => o with { Threads = Int(Value()) },
                "--seed" => o with { Seed = Int(Value()) },
                "--out" => o with { OutputDirectory = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench quality."),
            };
        }
        if (o.Only is not null)
            foreach (var key in o.Only.Where(k => !RowKeys.Contains(k)))
                throw new ArgumentException($"--only names an unknown row '{key}'; rows: {string.Join(", ", RowKeys)}.");
        if (o.Device is not null and not ("cpu" or "cuda")) throw new ArgumentException($"--device {o.Device} is not supported; use cpu or cuda.");
        return o;
    }
}

using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench quality`. <c>--size</c> picks a preset; the other flags override it.</summary>
public sealed record QualityBenchmarkOptions
{
    /// <summary>Data sets to run (folders of ../shared/data).</summary>
    public string[] Datasets { get; init; } = QualityData.Default;
    public string DataFolder { get; init; } = Path.Combine("..", "shared", "data");
    public string Size { get; init; } = "standard";
    /// <summary>Training sizes in rows; <see cref="All"/> = every training row of the data set.</summary>
    public int[] Sizes { get; init; } = { 1000, 4000, All };
    public int TestRows { get; init; } = 1000;
    /// <summary>MaxEpochs of the pretrained rows; null (default) = the estimator's automatic choice, as a user gets it.</summary>
    public int? Epochs { get; init; }
    public int BatchSize { get; init; } = 32;
    /// <summary>Tokens per row; null = each data set's own (64 short sentences, 128 pairs, 256 long documents).</summary>
    public int? MaxLength { get; init; }
    public double LearningRate { get; init; } = 1e-4;
    public double LoraLearningRate { get; init; } = 5e-4;
    public double PsrpLearningRate { get; init; } = 1e-3;
    public string Backbone { get; init; } = "all-MiniLM-L6-v2";
    /// <summary>Mechanism of the converted rows; null = ConversionOptions' default.</summary>
    public string? ConvertTo { get; init; }
    /// <summary>Attention-transfer steps of the converted rows; null = ConversionOptions' default.</summary>
    public int? TransferSteps { get; init; }
    public string[]? Only { get; init; }
    /// <summary>Seconds the whole run may take: once spent, the remaining points are listed as skipped (null = no limit).</summary>
    public double? BudgetSeconds { get; init; }
    public string? Device { get; init; }
    public int? Threads { get; init; }
    /// <summary>Training precision of every fitted method; null = the estimator's default (Auto).</summary>
    public Training.TrainingPrecision? Precision { get; init; }
    public int Seed { get; init; } = 1;
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public string Commit { get; init; } = "unknown";
    public string Machine { get; init; } = "unknown";
    public string CommandLine { get; init; } = "";

    /// <summary>The "all rows" size.</summary>
    public const int All = int.MaxValue;

    /// <summary>Method keys, in report order (for --only).</summary>
    public static readonly string[] RowKeys = { "sdca", "scratch", "full", "probe", "mp", "mp+", "lora", "converted", "converted+lora" };

    /// <summary>Text for a size ("1,000", or "all").</summary>
    public static string SizeText(int size) => size == All ? "all" : size.ToString("N0", CultureInfo.InvariantCulture);

    private static QualityBenchmarkOptions Preset(string size, QualityBenchmarkOptions o) => size switch
    {
        // CPU smoke size: shows every row runs; the numbers are noisy.
        "small" => o with { Size = size, Sizes = new[] { 1000 }, TestRows = 400, Epochs = 1, BatchSize = 16 },
        // The issue's sizes: 1,000 and 4,000 training rows and all rows, up to 1,000 test rows (GPU: about an hour for everything).
        "standard" => o with { Size = size, Sizes = new[] { 1000, 4000, All }, TestRows = 1000, Epochs = null, BatchSize = 32 },
        _ => throw new ArgumentException($"--size {size} is not supported; use small or standard."),
    };

    public static QualityBenchmarkOptions Parse(string[] args)
    {
        var o = new QualityBenchmarkOptions { CommandLine = "bench quality " + string.Join(' ', args.Select(a => a.Contains(' ') ? $"\"{a}\"" : a)) };
        int sizeAt = Array.IndexOf(args, "--size");
        if (sizeAt >= 0) o = Preset(sizeAt + 1 < args.Length ? args[sizeAt + 1] : throw new ArgumentException("Option --size needs a value."), o);
        for (int i = 0; i < args.Length; i++)
        {
            string flag = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {flag} needs a value.");
            int Int(string v) => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{flag}: '{v}' is not a positive integer.");
            double Double(string v) => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0 && !double.IsInfinity(d)
                ? d : throw new ArgumentException($"{flag}: '{v}' is not a positive number.");
            string[] List(string v) => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            o = flag switch
            {
                "--size" => o with { Size = Value() },
                "--data" or "--datasets" => o with { Datasets = List(Value()) },
                "--data-folder" => o with { DataFolder = Value() },
                "--sizes" => o with { Sizes = List(Value()).Select(s => s.Equals("all", StringComparison.OrdinalIgnoreCase) ? All : Int(s)).Distinct().ToArray() },
                "--train" => o with { Sizes = new[] { Int(Value()) } },
                "--test" => o with { TestRows = Int(Value()) },
                "--epochs" => o with { Epochs = Int(Value()) },
                "--batch" => o with { BatchSize = Int(Value()) },
                "--max-length" => o with { MaxLength = Int(Value()) },
                "--lr" => o with { LearningRate = Double(Value()) },
                "--lora-lr" => o with { LoraLearningRate = Double(Value()) },
                "--psrp-lr" => o with { PsrpLearningRate = Double(Value()) },
                "--backbone" => o with { Backbone = Value() },
                "--convert-to" => o with { ConvertTo = Value() },
                "--transfer-steps" => o with { TransferSteps = Int(Value()) },
                "--only" => o with { Only = List(Value()) },
                "--budget" => o with { BudgetSeconds = Double(Value()) },
                "--device" => o with { Device = Value() },
                "--threads" => o with { Threads = Int(Value()) },
                "--precision" => o with { Precision = Value() switch
                {
                    "auto" => Training.TrainingPrecision.Auto,
                    "fp32" => Training.TrainingPrecision.Float32,
                    "bf16" => Training.TrainingPrecision.BFloat16,
                    var v => throw new ArgumentException($"--precision {v} is not supported; use auto, fp32 or bf16."),
                } },
                "--seed" => o with { Seed = Int(Value()) },
                "--out" => o with { OutputDirectory = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                _ => throw new ArgumentException($"Unknown option '{flag}' for bench quality."),
            };
        }
        // The record names the commit it measured: the checkout's, unless --commit says otherwise.
        if (o.Commit == "unknown") o = o with { Commit = TrainingBenchmarkOptions.Detect("git", "rev-parse --short HEAD") ?? "unknown" };
        if (o.Datasets.Length == 0) throw new ArgumentException("--datasets names no data set; use e.g. --datasets sst2,stsb.");
        foreach (var name in o.Datasets.Where(d => !QualityData.Names.Contains(d)))
            throw new ArgumentException($"--datasets names an unknown data set '{name}'; known: {string.Join(", ", QualityData.Names)}.");
        if (o.Sizes.Length == 0) throw new ArgumentException("--sizes names no size; use e.g. --sizes 1000,4000,all.");
        if (o.Only is not null)
            foreach (var key in o.Only.Where(k => !RowKeys.Contains(k)))
                throw new ArgumentException($"--only names an unknown method '{key}'; methods: {string.Join(", ", RowKeys)}.");
        if (o.Device is not null and not ("cpu" or "cuda")) throw new ArgumentException($"--device {o.Device} is not supported; use cpu or cuda.");
        return o;
    }
}

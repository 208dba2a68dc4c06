namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench kernels`.</summary>
public sealed record KernelBenchmarkOptions
{
    /// <summary>Where `--profile-fused` and `--profile-delta` write without `--out`: a diagnostic, not one of the tables in docs/benchmarks.</summary>
    public static readonly string ProfileOutputDirectory = Path.Combine("artifacts", "benchmarks");

    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public long TokensPerBatch { get; init; } = 32768;
    public long[] Lengths { get; init; } = { 512, 2048, 8192, 32768 };
    public long Heads { get; init; } = 12;
    public long HeadDim { get; init; } = 64;
    public string[]? Only { get; init; }
    /// <summary>Only mechanisms whose name sorts at or after this one (ordinal), to resume a run cut short at that mechanism.</summary>
    public string? From { get; init; }
    public string? Device { get; init; }
    public string? DType { get; init; }
    public string Commit { get; init; } = "unknown";
    public string Machine { get; init; } = "unknown";
    public string CommandLine { get; init; } = "";
    public double SecondsPerCase { get; init; } = 0.6;
    /// <summary>Only cases whose name contains one of these (case-insensitive), e.g. "sdpa,fused".</summary>
    public string[]? Cases { get; init; }
    /// <summary>Check the fused CUDA linear attention kernels against the naive twin instead of timing.</summary>
    public bool VerifyFused { get; init; }
    /// <summary>Time each fused kernel (relu and elu maps, both kernel families) instead of the mechanism table.</summary>
    public bool ProfileFused { get; init; }
    /// <summary>Time each stage of the delta rule's chunk form (no decay, per head, per key channel) instead of the mechanism table.</summary>
    public bool ProfileDelta { get; init; }

    public static KernelBenchmarkOptions Parse(string[] args)
    {
        var o = new KernelBenchmarkOptions { CommandLine = "bench kernels " + string.Join(' ', args) };
        bool outGiven = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            long[] Longs(string v) => v.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s =>
                long.TryParse(s, out var n) && n > 0 ? n : throw new ArgumentException($"'{s}' is not a positive integer (in '{v}').")).ToArray();
            long Long(string v) => Longs(v).Single();
            outGiven |= args[i] == "--out";
            o = args[i] switch
            {
                "--out" => o with { OutputDirectory = Value() },
                "--tokens" => o with { TokensPerBatch = Long(Value()) },
                "--lengths" => o with { Lengths = Longs(Value()) },
                "--heads" => o with { Heads = Long(Value()) },
                "--dim" => o with { HeadDim = Long(Value()) },
                "--only" => o with { Only = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--from" => o with { From = Value() },
                "--device" => o with { Device = Value() },
                "--dtype" => o with { DType = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                "--cases" => o with { Cases = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--verify-fused" => o with { VerifyFused = true },
                "--profile-fused" => o with { ProfileFused = true },
                "--profile-delta" => o with { ProfileDelta = true },
                "--seconds" => o with { SecondsPerCase = double.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture) },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench kernels."),
            };
        }
        return (o.ProfileFused || o.ProfileDelta) && !outGiven ? o with { OutputDirectory = ProfileOutputDirectory } : o;
    }
}

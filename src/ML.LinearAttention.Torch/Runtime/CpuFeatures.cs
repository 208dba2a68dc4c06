namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>Instruction-set features of this machine's CPU that change what is fastest (Linux: /proc/cpuinfo; elsewhere
/// unknown, reported as absent).</summary>
public static class CpuFeatures
{
    private static readonly Lazy<HashSet<string>> Flags = new(ReadFlags);

    /// <summary>Whether the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16), where libtorch's bf16
    /// matrix products run about twice as fast as fp32.</summary>
    public static bool HasBFloat16Instructions => Has("avx512_bf16") || Has("amx_bf16");

    /// <summary>Whether the flags could be read (Linux); when not, <see cref="Has"/> is false for every flag.</summary>
    public static bool FlagsKnown => Flags.Value.Count > 0;

    /// <summary>Whether /proc/cpuinfo lists <paramref name="flag"/> (e.g. avx2, avx512f, avx512_bf16, amx_tile).</summary>
    public static bool Has(string flag) => Flags.Value.Contains(flag);

    private static HashSet<string> ReadFlags()
    {
        try
        {
            if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) return new HashSet<string>();
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
            return line is null ? new HashSet<string>() : new HashSet<string>(line.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);
        }
        catch (IOException) { return new HashSet<string>(); }
        catch (UnauthorizedAccessException) { return new HashSet<string>(); }
    }
}

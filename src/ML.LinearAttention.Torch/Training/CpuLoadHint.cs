using System.Globalization;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// A warning for CPU training on a machine busier than its cores. libtorch runs each operation on all its CPU threads
/// and waits for the slowest; when other processes hold the cores, every operation waits for a descheduled thread, and
/// a step slows down several times (docs/benchmarks/training-cpu.md measures one thread against two). The thread count is not changed automatically: it can change libtorch's
/// reduction order, and CPU training is deterministic for a fixed seed.
/// </summary>
internal static class CpuLoadHint
{
    /// <summary>The warning for this machine now, or null (one thread, a machine within its cores, or no load average).</summary>
    public static string? Check(int threads) => Message(threads, Environment.ProcessorCount, ReadLoadAverage());

    /// <summary>The warning for <paramref name="threads"/> libtorch threads on <paramref name="cores"/> cores at a 1-minute
    /// load average of <paramref name="loadAverage"/>, or null when there is nothing to say.</summary>
    internal static string? Message(int threads, int cores, double? loadAverage)
    {
        if (threads <= 1 || loadAverage is not double load || load <= cores + 1) return null;
        return $"The machine is busier than its {cores} cores (1-minute load average {load.ToString("F1", CultureInfo.InvariantCulture)}): libtorch's {threads} CPU " +
               "threads wait for each other at every operation, which slows training down several times. Set CpuThreads = 1 on the estimator's " +
               "options (samples CLI: --threads 1) to train faster on a busy machine.";
    }

    private static double? ReadLoadAverage()
    {
        try
        {
            if (!OperatingSystem.IsLinux() || !File.Exists("/proc/loadavg")) return null;
            var first = File.ReadAllText("/proc/loadavg").Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            return double.TryParse(first, NumberStyles.Float, CultureInfo.InvariantCulture, out double load) ? load : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}

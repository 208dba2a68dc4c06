namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The variants `bench cpu-training` compares in one process: the CPU fast paths of the training loop off
/// (baseline) or on (optimized, the library's defaults).</summary>
public static class CpuTrainingVariants
{
    public static readonly string[] Names = { "baseline", "optimized" };

    /// <summary>Sets the process-wide switches of <paramref name="variant"/>; disposing restores them.</summary>
    public static IDisposable Apply(string variant)
    {
        if (!Names.Contains(variant)) throw new ArgumentException($"Unknown variant '{variant}'; use {string.Join(" or ", Names)}.");
        bool fused = Training.CpuFastPaths.FusedAdamW;
        Training.CpuFastPaths.FusedAdamW = variant == "optimized";
        return new Restore(() => Training.CpuFastPaths.FusedAdamW = fused);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}

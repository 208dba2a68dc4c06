using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The variants `bench cpu-training` compares in one process: the CPU fast paths of the training loop off
/// (baseline, fp32) or on (optimized, fp32), and bf16 (the fast paths on, Precision = BFloat16).</summary>
public static class CpuTrainingVariants
{
    public static readonly string[] Names = { "baseline", "optimized", "bf16" };

    /// <summary>Sets the process-wide switches of <paramref name="variant"/>; disposing restores them.</summary>
    public static IDisposable Apply(string variant)
    {
        if (!Names.Contains(variant)) throw new ArgumentException($"Unknown variant '{variant}'; use {string.Join(" or ", Names)}.");
        var (adamW, dropout, scores) = (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences);
        bool on = variant != "baseline";
        (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences) = (on, on, on);
        return new Restore(() => (CpuFastPaths.FusedAdamW, CpuFastPaths.FastDropout, CpuFastPaths.ExplicitScoresForShortSequences) = (adamW, dropout, scores));
    }

    /// <summary>The training precision of <paramref name="variant"/>: explicit, so that the record does not depend on what
    /// Auto picks on the machine (bf16 for MiniLM on a CPU with bf16 instructions).</summary>
    public static Training.TrainingPrecision Precision(string variant) =>
        variant == "bf16" ? Training.TrainingPrecision.BFloat16 : Training.TrainingPrecision.Float32;

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}

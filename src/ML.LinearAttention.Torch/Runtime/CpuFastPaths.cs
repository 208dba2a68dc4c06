namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>Process-wide switches of the CPU fast paths (on by default). They change speed, not the model: turn one off
/// to compare (`bench cpu-training` turns them all off for its baseline) or to rule it out when looking for a problem.</summary>
public static class CpuFastPaths
{
    /// <summary>
    /// AdamW on CPU fp32 parameters as one vectorised pass per tensor over weights, gradient and both moments, with
    /// the gradient-clipping factor applied in the same pass and the gradients released afterwards (instead of
    /// TorchSharp's nine tensor operations per parameter, a separate clipping pass and zero-filled gradients that the
    /// next backward pass adds into). Same update as TorchSharp's AdamW, to float rounding.
    /// </summary>
    public static bool FusedAdamW { get; set; } = true;

    /// <summary>
    /// Dropout masks on the CPU from a vectorised counter-based generator (<see cref="Encoder.FastDropout"/>) instead
    /// of libtorch's serial Bernoulli sampler. Same distribution; another random stream.
    /// </summary>
    public static bool FastDropout { get; set; } = true;

    /// <summary>
    /// Softmax attention over short sequences on the CPU with explicit scores instead of SDPA's flash kernel
    /// (<see cref="Attention.Softmax.SoftmaxKernels.UsesExplicitScores"/>). Same result, to float rounding.
    /// </summary>
    public static bool ExplicitScoresForShortSequences { get; set; } = true;
}

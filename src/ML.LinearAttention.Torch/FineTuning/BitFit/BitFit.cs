using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning.BitFit;

/// <summary>Options of <see cref="BitFitFineTuning"/>.</summary>
public sealed record BitFitOptions : FineTuningOptions
{
    /// <summary>
    /// Train the weights (and biases) of the normalization layers too. On by default: the attention projections here
    /// have no bias (q/k/v/o are bias-free in most mechanisms), so biases alone would leave only the FFNs adaptable.
    /// </summary>
    public bool IncludeNorms { get; init; } = true;
}

/// <summary>
/// BitFit (Ben Zaken et al. 2022): only bias terms and the task head train. Because our projections usually have no
/// bias (unlike BERT's), the RMSNorm/LayerNorm gains train too unless <see cref="BitFitOptions.IncludeNorms"/> is off.
/// </summary>
public sealed class BitFitFineTuning : FineTuningMethod<BitFitOptions>
{
    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, BitFitOptions options)
        => parameter.Part == ModelPart.Head || parameter.IsBias || (options.IncludeNorms && parameter.IsNorm);

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, BitFitOptions options)
        => options.IncludeNorms ? "biases, norm gains and the head train" : "biases and the head train";
}

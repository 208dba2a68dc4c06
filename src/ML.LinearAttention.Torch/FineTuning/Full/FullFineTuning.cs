using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning.Full;

/// <summary>Options of full fine-tuning (none).</summary>
public sealed record FullOptions : FineTuningOptions;

/// <summary>Full fine-tuning: every parameter trains (the estimators' default).</summary>
public sealed class FullFineTuning : FineTuningMethod<FullOptions>
{
    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, FullOptions options) => true;
}

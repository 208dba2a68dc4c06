namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// Base of every fine-tuning method's options record. Each method defines a sealed record with its defaults
/// (from its paper or reference code); records round-trip through JSON (<see cref="FineTuningRegistry.SerializeOptions"/>).
/// </summary>
public abstract record FineTuningOptions;

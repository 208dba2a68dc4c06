using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// One padded batch on the model's device. Token input: <see cref="Tokens"/> [B, T] int64 (+ <see cref="Segments"/>);
/// numeric-sequence input: <see cref="Values"/> [B, T, F] float32. <see cref="Mask"/> [B, T] bool is true at real
/// steps (right padding). <see cref="Side"/> [B, S] float32 are optional side features; <see cref="Labels"/> are class
/// indices [B] int64 or targets [B] float32 when training. Image input: <see cref="Pixels"/> [B, H·W·3] uint8 (RGB,
/// row-major; the model knows H and W) with a [B, 1] mask.
/// </summary>
public sealed class ModelBatch : IDisposable
{
    public Tensor? Tokens { get; init; }
    public Tensor? Segments { get; init; }
    public Tensor? Values { get; init; }
    public required Tensor Mask { get; init; }
    public Tensor? Side { get; init; }
    public Tensor? Pixels { get; init; }
    public Tensor? Labels { get; init; }

    /// <summary>Rows in the batch.</summary>
    public long Size => Mask.shape[0];

    /// <summary>Real tokens (steps) in the batch.</summary>
    public long RealTokens { get; init; }

    /// <summary>
    /// False when every row fills the whole batch length (known on the host when collating): the blocks then run
    /// without a padding mask, which lets softmax use its flash kernel and skips masking work in every mixer.
    /// True (the safe default) whenever unknown.
    /// </summary>
    public bool HasPadding { get; init; } = true;

    public void Dispose()
    {
        Tokens?.Dispose(); Segments?.Dispose(); Values?.Dispose(); Mask.Dispose(); Side?.Dispose(); Labels?.Dispose(); Pixels?.Dispose();
    }
}

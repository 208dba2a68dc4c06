namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// One row ready for batching: token ids and segments, or numeric steps (Length × F values, row-major), plus optional
/// side features and the label (class index, or the regression target).
/// </summary>
public sealed class Example
{
    public int[]? Ids { get; init; }
    public int[]? Segments { get; init; }
    public float[]? Values { get; init; }
    public float[]? Side { get; init; }
    /// <summary>Image input: the decoded, resized image as RGB bytes, row-major (height × width × 3); Length is 1.</summary>
    public byte[]? Pixels { get; init; }
    public float Label { get; init; }
    /// <summary>Number of steps (tokens) of the row.</summary>
    public required int Length { get; init; }
}

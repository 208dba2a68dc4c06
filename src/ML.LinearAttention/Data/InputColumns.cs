using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>The input columns of a task as the reader binds them.</summary>
public sealed record InputColumns
{
    /// <summary>Text columns joined as segments (empty for numeric-sequence input).</summary>
    public IReadOnlyList<string> TextColumns { get; init; } = Array.Empty<string>();
    /// <summary>vector&lt;Single&gt; column holding T × F values of a numeric sequence (row-major), or null.</summary>
    public string? SequenceColumn { get; init; }
    /// <summary>Features per step F of <see cref="SequenceColumn"/>.</summary>
    public int SequenceFeatures { get; init; } = 1;
    /// <summary>Single or vector&lt;Single&gt; column of side features, or null.</summary>
    public string? SideFeaturesColumn { get; init; }
    /// <summary>Label column.</summary>
    public string LabelColumn { get; init; } = "Label";
    /// <summary>Label kind.</summary>
    public LabelKind LabelKind { get; init; }
    /// <summary>Image column (MLImage, or encoded image bytes as a vector of Byte), or null.</summary>
    public string? ImageColumn { get; init; }
    /// <summary>Size every image of <see cref="ImageColumn"/> is resized to, and how.</summary>
    public ImageGeometry? Image { get; init; }
}

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>What kind of label the task trains on.</summary>
public enum LabelKind
{
    /// <summary>key&lt;UInt32&gt;: class index = key − 1 (key 0 = missing, skipped in training).</summary>
    Key,
    /// <summary>Single: a regression target (NaN skipped in training).</summary>
    Float,
}

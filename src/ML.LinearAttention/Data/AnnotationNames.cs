namespace Microsoft.ML.LinearAttention.Data;

/// <summary>ML.NET's annotation names and values (AnnotationUtils is not public); the strings are ML.NET's own.</summary>
internal static class AnnotationNames
{
    public const string KeyValues = "KeyValues";
    public const string SlotNames = "SlotNames";
    public const string ScoreColumnKind = "ScoreColumnKind";
    public const string ScoreValueKind = "ScoreValueKind";
    public const string MulticlassClassification = "MulticlassClassification";
    public const string Regression = "Regression";
    public const string Score = "Score";
    public const string PredictedLabel = "PredictedLabel";
}

using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>
/// Checks of the training data that need its statistics pass (the schema checks come before it): a classifier needs
/// rows of at least two classes; rows without a label, classes without rows and non-finite numbers are reported in the
/// log with what was done about them.
/// </summary>
internal static class TrainingDataChecks
{
    public static void Check(DataStatistics stats, InputColumns columns, DataViewSchema schema, ITrainingLog log)
    {
        if (stats.SkippedRows > 0)
            log.Warning($"{stats.SkippedRows:N0} training row(s) have no label in column '{columns.LabelColumn}' (NaN, or a value MapValueToKey did not know) and were " +
                        "skipped. Fill or remove them to train on them.");
        if (stats.NonFiniteValues > 0)
            log.Warning($"{stats.NonFiniteValues:N0} numeric input value(s) are NaN or ±∞; side features were replaced by their training mean and sequence " +
                        "steps by 0 (the same happens at prediction time). Clean the data if these values mean something else.");
        if (columns.LabelKind != LabelKind.Key || stats.ClassCounts is not { } counts) return;

        var names = LabelKeyValues.From(schema[columns.LabelColumn])?.Names();
        string Name(int index) => names is not null && index < names.Length ? $"'{names[index]}'" : $"key {index + 1}";
        if (counts.Count < 2)
        {
            var only = counts.Keys.Single();
            throw new ArgumentException(
                $"The training data holds a single class, {Name(only)} ({stats.Rows:N0} row(s)) in label column '{columns.LabelColumn}'; a classifier needs rows of " +
                "at least two classes. Check the label column, and the filter or split that produced this data (a stratified split keeps every class).", "input");
        }
        ulong keyCount = ((KeyDataViewType)schema[columns.LabelColumn].Type).Count;
        if ((ulong)counts.Count < keyCount)
        {
            var missing = Enumerable.Range(0, (int)keyCount).Where(i => !counts.ContainsKey(i)).Take(10).Select(Name);
            log.Warning($"{(int)keyCount - counts.Count} of the label's {keyCount} classes have no training row ({string.Join(", ", missing)}" +
                        $"{((int)keyCount - counts.Count > 10 ? ", ..." : "")}); the model will hardly ever predict them.");
        }
    }
}

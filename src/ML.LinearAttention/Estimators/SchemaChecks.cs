using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Training;
using static Microsoft.ML.SchemaShape.Column;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// Input-column checks run before anything else, on a <see cref="DataViewSchema"/> (Fit, Transform) or a
/// <see cref="SchemaShape"/> (GetOutputSchema): a missing column or a wrong type gives an error naming the column,
/// the expected type and the actual one, like ML.NET's own schema-mismatch errors.
/// </summary>
internal static class SchemaChecks
{
    private enum Need { Text, KeyLabel, FloatLabel, FloatOrVector, FloatVector, Image }

    private static string Expected(Need need) => need switch
    {
        Need.Text => "String (Text)",
        Need.KeyLabel => "Key<UInt32> (apply mlContext.Transforms.Conversion.MapValueToKey to the label first)",
        Need.FloatLabel => "Single (or Double)",
        Need.FloatOrVector => "Single or a known-size Vector<Single>",
        Need.FloatVector => "Vector<Single>",
        Need.Image => "Image (MLImage, from mlContext.Transforms.LoadImages or LoadRawImageBytes) or encoded image bytes (Vector<Byte>: byte[] or VBuffer<byte>)",
        _ => need.ToString(),
    };

    private static IEnumerable<(string Column, string Role, Need Need)> Requirements(InputColumns c, bool withLabel)
    {
        foreach (var t in c.TextColumns) yield return (t, "text", Need.Text);
        if (c.ImageColumn is not null) yield return (c.ImageColumn, "image", Need.Image);
        if (c.SequenceColumn is not null) yield return (c.SequenceColumn, "numeric sequence", Need.FloatVector);
        if (c.SideFeaturesColumn is not null) yield return (c.SideFeaturesColumn, "feature", Need.FloatOrVector);
        if (withLabel) yield return (c.LabelColumn, "label", c.LabelKind == LabelKind.Key ? Need.KeyLabel : Need.FloatLabel);
    }

    private static Exception Missing(string name, string role, Need need, IEnumerable<string> available)
        => new ArgumentOutOfRangeException($"The {role} column '{name}' was not found in the input data; expected a column of type {Expected(need)}. " +
                                           $"Available columns: {string.Join(", ", available.Distinct())}.", (Exception?)null); // no " (Parameter …)" suffix

    private static Exception WrongType(string name, string role, Need need, string actual)
        => new ArgumentOutOfRangeException($"The {role} column '{name}' has type {actual}, but {Expected(need)} is expected.", (Exception?)null);

    /// <summary>Checks a data schema.</summary>
    public static void Check(DataViewSchema schema, InputColumns columns, bool withLabel)
    {
        foreach (var (name, role, need) in Requirements(columns, withLabel))
        {
            var col = schema.GetColumnOrNull(name);
            if (col is null) throw Missing(name, role, need, schema.Where(c => !c.IsHidden).Select(c => c.Name));
            var type = col.Value.Type;
            bool ok = need switch
            {
                Need.Text => type is TextDataViewType,
                Need.KeyLabel => type is KeyDataViewType k && k.RawType == typeof(uint) && k.Count > 0,
                Need.FloatLabel => type == NumberDataViewType.Single || type == NumberDataViewType.Double,
                Need.FloatOrVector => type == NumberDataViewType.Single || type is VectorDataViewType { ItemType: var it, IsKnownSize: true } && it == NumberDataViewType.Single,
                Need.FloatVector => type is VectorDataViewType v && v.ItemType == NumberDataViewType.Single,
                Need.Image => ImageDecoder.IsImageType(type),
                _ => false,
            };
            if (!ok) throw WrongType(name, role, need, type.ToString() ?? type.GetType().Name);
        }
    }

    /// <summary>Checks a schema shape (estimator.GetOutputSchema).</summary>
    public static void Check(SchemaShape shape, InputColumns columns, bool withLabel)
    {
        foreach (var (name, role, need) in Requirements(columns, withLabel))
        {
            var col = shape.FirstOrDefault(c => c.Name == name);
            if (col.Name is null) throw Missing(name, role, need, shape.Select(c => c.Name));
            bool ok = need switch
            {
                Need.Text => col.Kind == VectorKind.Scalar && col.ItemType is TextDataViewType,
                Need.KeyLabel => col.IsKey && col.Kind == VectorKind.Scalar && col.ItemType.RawType == typeof(uint),
                Need.FloatLabel => col.Kind == VectorKind.Scalar && !col.IsKey && (col.ItemType == NumberDataViewType.Single || col.ItemType == NumberDataViewType.Double),
                Need.FloatOrVector => !col.IsKey && col.ItemType == NumberDataViewType.Single && col.Kind != VectorKind.VariableVector,
                Need.FloatVector => !col.IsKey && col.ItemType == NumberDataViewType.Single && col.Kind != VectorKind.Scalar,
                Need.Image => !col.IsKey && (col.Kind == VectorKind.Scalar ? ImageDecoder.IsImageType(col.ItemType) : col.ItemType == NumberDataViewType.Byte),
                _ => false,
            };
            if (!ok) throw WrongType(name, role, need, Describe(col));
        }
    }

    /// <summary>The type of a shape column written as ML.NET writes it.</summary>
    public static string Describe(SchemaShape.Column c)
    {
        string s = c.ItemType?.ToString() ?? "(no item type)";
        if (c.IsKey) s = $"Key<{s}>";
        return c.Kind switch { VectorKind.Vector => $"Vector<{s}>", VectorKind.VariableVector => $"VarVector<{s}>", _ => s };
    }
}

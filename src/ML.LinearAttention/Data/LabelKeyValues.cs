using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>
/// The KeyValues annotation of a key label (class names), kept with the model so that PredictedLabel carries the
/// same annotation (MapKeyToValue works) and Score gets SlotNames. Supports the value types MapValueToKey produces
/// from text, booleans and numbers.
/// </summary>
internal abstract class LabelKeyValues
{
    public abstract DataViewType ItemType { get; }
    public abstract int Count { get; }
    /// <summary>Class names as text (SlotNames of the score column).</summary>
    public abstract ReadOnlyMemory<char>[] Names();
    public abstract void AddKeyValues(DataViewSchema.Annotations.Builder builder);
    public abstract void Write(BinaryWriter w);

    private static readonly (Type Raw, DataViewType Type, byte Code)[] Supported =
    {
        (typeof(ReadOnlyMemory<char>), TextDataViewType.Instance, 1), (typeof(bool), BooleanDataViewType.Instance, 2),
        (typeof(float), NumberDataViewType.Single, 3), (typeof(double), NumberDataViewType.Double, 4),
        (typeof(int), NumberDataViewType.Int32, 5), (typeof(long), NumberDataViewType.Int64, 6),
        (typeof(uint), NumberDataViewType.UInt32, 7), (typeof(ulong), NumberDataViewType.UInt64, 8),
    };

    /// <summary>The label column's KeyValues, or null when it has none (or of an unsupported type).</summary>
    public static LabelKeyValues? From(DataViewSchema.Column label)
    {
        var col = label.Annotations.Schema.GetColumnOrNull(AnnotationNames.KeyValues);
        if (col is null || col.Value.Type is not VectorDataViewType vt) return null;
        return vt.ItemType.RawType switch
        {
            var t when t == typeof(ReadOnlyMemory<char>) => Of<ReadOnlyMemory<char>>(label, vt.ItemType),
            var t when t == typeof(bool) => Of<bool>(label, vt.ItemType),
            var t when t == typeof(float) => Of<float>(label, vt.ItemType),
            var t when t == typeof(double) => Of<double>(label, vt.ItemType),
            var t when t == typeof(int) => Of<int>(label, vt.ItemType),
            var t when t == typeof(long) => Of<long>(label, vt.ItemType),
            var t when t == typeof(uint) => Of<uint>(label, vt.ItemType),
            var t when t == typeof(ulong) => Of<ulong>(label, vt.ItemType),
            _ => null,
        };
    }

    private static LabelKeyValues Of<T>(DataViewSchema.Column label, DataViewType itemType)
    {
        VBuffer<T> buf = default;
        label.Annotations.GetValue(AnnotationNames.KeyValues, ref buf);
        return new Typed<T>(itemType, buf.DenseValues().ToArray());
    }

    public static LabelKeyValues? Read(BinaryReader r)
    {
        byte code = r.ReadByte();
        if (code == 0) return null;
        int n = r.ReadInt32();
        return code switch
        {
            1 => new Typed<ReadOnlyMemory<char>>(TextDataViewType.Instance, Enumerable.Range(0, n).Select(_ => r.ReadString().AsMemory()).ToArray()),
            2 => new Typed<bool>(BooleanDataViewType.Instance, Enumerable.Range(0, n).Select(_ => r.ReadBoolean()).ToArray()),
            3 => new Typed<float>(NumberDataViewType.Single, Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray()),
            4 => new Typed<double>(NumberDataViewType.Double, Enumerable.Range(0, n).Select(_ => r.ReadDouble()).ToArray()),
            5 => new Typed<int>(NumberDataViewType.Int32, Enumerable.Range(0, n).Select(_ => r.ReadInt32()).ToArray()),
            6 => new Typed<long>(NumberDataViewType.Int64, Enumerable.Range(0, n).Select(_ => r.ReadInt64()).ToArray()),
            7 => new Typed<uint>(NumberDataViewType.UInt32, Enumerable.Range(0, n).Select(_ => r.ReadUInt32()).ToArray()),
            8 => new Typed<ulong>(NumberDataViewType.UInt64, Enumerable.Range(0, n).Select(_ => r.ReadUInt64()).ToArray()),
            _ => throw new InvalidDataException($"Unknown label value type code {code} in the model."),
        };
    }

    public static void Write(BinaryWriter w, LabelKeyValues? values)
    {
        if (values is null) { w.Write((byte)0); return; }
        values.Write(w);
    }

    private sealed class Typed<T>(DataViewType itemType, T[] values) : LabelKeyValues
    {
        public override DataViewType ItemType => itemType;
        public override int Count => values.Length;
        public override ReadOnlyMemory<char>[] Names() => values.Select(v => (v?.ToString() ?? "").AsMemory()).ToArray();

        public override void AddKeyValues(DataViewSchema.Annotations.Builder builder)
        {
            ValueGetter<VBuffer<T>> getter = (ref VBuffer<T> dst) => new VBuffer<T>(values.Length, (T[])values.Clone()).CopyTo(ref dst);
            builder.Add(AnnotationNames.KeyValues, new VectorDataViewType((PrimitiveDataViewType)itemType, values.Length), getter);
        }

        public override void Write(BinaryWriter w)
        {
            byte code = Supported.First(s => s.Raw == typeof(T)).Code;
            w.Write(code);
            w.Write(values.Length);
            foreach (object? v in values)
            {
                switch (v)
                {
                    case ReadOnlyMemory<char> m: w.Write(m.ToString()); break;
                    case bool b: w.Write(b); break;
                    case float f: w.Write(f); break;
                    case double d: w.Write(d); break;
                    case int i: w.Write(i); break;
                    case long l: w.Write(l); break;
                    case uint u: w.Write(u); break;
                    case ulong ul: w.Write(ul); break;
                }
            }
        }
    }
}

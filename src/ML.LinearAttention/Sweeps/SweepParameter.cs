using System.Globalization;
using System.Reflection;
using Microsoft.ML.SearchSpace;

namespace Microsoft.ML.LinearAttention.Sweeps;

/// <summary>
/// One dimension of a search space, read from a <c>[Range]</c> or <c>[Choice]</c> attribute on a public field or property
/// of an options class (the attributes ML.NET AutoML's <c>SearchSpace&lt;T&gt;</c> reads). Ranges of integers stay integers;
/// <c>logBase: true</c> ranges are sampled and gridded on a log scale.
/// </summary>
public sealed class SweepParameter
{
    private readonly MemberInfo _member;

    private SweepParameter(MemberInfo member, Type valueType)
    {
        _member = member;
        // A nullable option (e.g. MaxEpochs, null = automatic) is searched over its underlying type's values.
        ValueType = Nullable.GetUnderlyingType(valueType) ?? valueType;
    }

    /// <summary>Field or property name (e.g. "LearningRate").</summary>
    public string Name => _member.Name;
    /// <summary>Type of the member (int, double, float, string, ...; the underlying type of a nullable member).</summary>
    public Type ValueType { get; }
    /// <summary>Lower bound of a range, else null.</summary>
    public double? Min { get; private init; }
    /// <summary>Upper bound of a range, else null.</summary>
    public double? Max { get; private init; }
    /// <summary>Whether a range is searched on a log scale.</summary>
    public bool LogScale { get; private init; }
    /// <summary>Candidates of a choice, else null.</summary>
    public IReadOnlyList<object>? Choices { get; private init; }
    /// <summary>The attribute's initial / default value.</summary>
    public object? Default { get; private init; }

    /// <summary>True for a range of integers.</summary>
    public bool IsInteger => ValueType == typeof(int) || ValueType == typeof(long);

    /// <summary>The search space of <paramref name="optionsType"/>: every member with a Range or Choice attribute, in declaration order.</summary>
    public static IReadOnlyList<SweepParameter> Read(Type optionsType)
    {
        ArgumentNullException.ThrowIfNull(optionsType);
        var members = optionsType.GetMembers(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m is FieldInfo or PropertyInfo { CanWrite: true })
            .OrderBy(m => m.MetadataToken);
        var result = new List<SweepParameter>();
        foreach (var m in members)
        {
            var type = m is FieldInfo f ? f.FieldType : ((PropertyInfo)m).PropertyType;
            if (m.GetCustomAttribute<RangeAttribute>() is { } r)
                result.Add(new SweepParameter(m, type)
                {
                    Min = System.Convert.ToDouble(r.Min, CultureInfo.InvariantCulture), Max = System.Convert.ToDouble(r.Max, CultureInfo.InvariantCulture),
                    LogScale = r.LogBase, Default = r.Init,
                });
            else if (m.GetCustomAttribute<ChoiceAttribute>() is { } c)
                result.Add(new SweepParameter(m, type) { Choices = c.Candidates.ToArray(), Default = c.DefaultValue ?? c.Candidates.FirstOrDefault() });
        }
        return result;
    }

    /// <summary>A random value (uniform, or log-uniform for log-scale ranges).</summary>
    public object Sample(Random rng)
    {
        if (Choices is not null) return Convert(Choices[rng.Next(Choices.Count)]);
        double u = rng.NextDouble();
        double v = LogScale ? Math.Exp(Math.Log(Min!.Value) + u * (Math.Log(Max!.Value) - Math.Log(Min.Value))) : Min!.Value + u * (Max!.Value - Min.Value);
        return Convert(v);
    }

    /// <summary>Grid values: every choice, or <paramref name="pointsPerRange"/> evenly (or log-evenly) spaced points of a range, ends included.</summary>
    public IReadOnlyList<object> Grid(int pointsPerRange)
    {
        if (Choices is not null) return Choices.Select(c => Convert(c)).ToList();
        if (pointsPerRange < 2) throw new ArgumentOutOfRangeException(nameof(pointsPerRange), pointsPerRange, "A range needs at least 2 grid points (its ends).");
        var values = Enumerable.Range(0, pointsPerRange).Select(i =>
        {
            double t = (double)i / (pointsPerRange - 1);
            return LogScale ? Math.Exp(Math.Log(Min!.Value) + t * (Math.Log(Max!.Value) - Math.Log(Min.Value))) : Min!.Value + t * (Max!.Value - Min.Value);
        });
        return values.Select(v => Convert(v)).Distinct().ToList();
    }

    /// <summary>The member's value in <paramref name="options"/>.</summary>
    public object? Get(object options) => _member is FieldInfo f ? f.GetValue(options) : ((PropertyInfo)_member).GetValue(options);

    /// <summary>Sets the member in <paramref name="options"/>.</summary>
    public void Set(object options, object value)
    {
        var v = Convert(value);
        if (_member is FieldInfo f) f.SetValue(options, v);
        else ((PropertyInfo)_member).SetValue(options, v);
    }

    private object Convert(object value)
    {
        if (ValueType == typeof(string)) return value.ToString()!;
        if (ValueType.IsEnum) return value is string s ? Enum.Parse(ValueType, s) : Enum.ToObject(ValueType, value);
        if (IsInteger && value is double or float)
        {
            double d = System.Convert.ToDouble(value, CultureInfo.InvariantCulture);
            d = Math.Round(d);
            if (Min is { } lo) d = Math.Max(d, Math.Ceiling(lo));
            if (Max is { } hi) d = Math.Min(d, Math.Floor(hi));
            value = d;
        }
        return System.Convert.ChangeType(value, ValueType, CultureInfo.InvariantCulture);
    }

    /// <inheritdoc/>
    public override string ToString() => Choices is not null
        ? $"{Name} ∈ {{{string.Join(", ", Choices)}}}"
        : $"{Name} ∈ [{Min.ToString()}, {Max.ToString()}]{(LogScale ? " (log)" : "")}";
}

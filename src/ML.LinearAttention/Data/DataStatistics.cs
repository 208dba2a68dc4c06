using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>
/// One streaming pass over the cheap columns (label, side features, numeric sequence; never text): row count and the
/// means and standard deviations used to standardise inputs and regression targets.
/// </summary>
public sealed class DataStatistics
{
    public long Rows { get; private init; }
    public float TargetMean { get; private init; }
    public float TargetStd { get; private init; } = 1;
    public float[]? SideMean { get; private init; }
    public float[]? SideStd { get; private init; }
    public float[]? ValueMean { get; private init; }
    public float[]? ValueStd { get; private init; }
    public int SideLength { get; private init; }
    /// <summary>Rows skipped for a missing label (NaN, or key 0).</summary>
    public long SkippedRows { get; private init; }
    /// <summary>Rows per class (key − 1) for key labels, else null.</summary>
    public IReadOnlyDictionary<int, long>? ClassCounts { get; private init; }
    /// <summary>Side-feature and sequence values that were NaN or ±∞ (replaced by the training mean or 0).</summary>
    public long NonFiniteValues { get; private init; }

    /// <summary>Computes the statistics of <paramref name="data"/> for <paramref name="columns"/>.</summary>
    public static DataStatistics Compute(IDataView data, InputColumns columns, CancellationToken cancellation = default)
    {
        var schema = data.Schema;
        var active = new List<DataViewSchema.Column> { schema[columns.LabelColumn] };
        if (columns.SideFeaturesColumn is not null) active.Add(schema[columns.SideFeaturesColumn]);
        if (columns.SequenceColumn is not null) active.Add(schema[columns.SequenceColumn]);
        using var cursor = data.GetRowCursor(active);
        Func<float>? target = null;
        if (columns.LabelKind == LabelKind.Key)
        {
            var g = cursor.GetGetter<uint>(schema[columns.LabelColumn]);
            uint k = 0;
            target = () => { g(ref k); return k == 0 ? float.NaN : k - 1; };
        }
        else
        {
            var col = schema[columns.LabelColumn];
            if (col.Type == NumberDataViewType.Double) { var gd = cursor.GetGetter<double>(col); double d = 0; target = () => { gd(ref d); return (float)d; }; }
            else { var gf = cursor.GetGetter<float>(col); float v = 0; target = () => { gf(ref v); return v; }; }
        }
        var side = columns.SideFeaturesColumn is null ? null : ExampleReader.FloatsReader(cursor, schema[columns.SideFeaturesColumn]);
        ValueGetter<VBuffer<float>>? seq = columns.SequenceColumn is null ? null : cursor.GetGetter<VBuffer<float>>(schema[columns.SequenceColumn]);
        int f = columns.SequenceFeatures;
        var sideAcc = new Moments(0);
        var valueAcc = new Moments(seq is null ? 0 : f);
        var targetAcc = new Moments(1);
        long rows = 0, skipped = 0, nonFinite = 0;
        var classes = columns.LabelKind == LabelKind.Key ? new Dictionary<int, long>() : null;
        VBuffer<float> buf = default;
        while (cursor.MoveNext())
        {
            cancellation.ThrowIfCancellationRequested();
            float y = target();
            if (float.IsNaN(y)) { skipped++; continue; }
            rows++;
            if (classes is not null) classes[(int)y] = classes.GetValueOrDefault((int)y) + 1;
            targetAcc.Add(0, y);
            if (side is not null)
            {
                var s = side();
                if (sideAcc.Width == 0) sideAcc = new Moments(s.Length);
                if (s.Length != sideAcc.Width)
                    throw new InvalidOperationException($"Column '{columns.SideFeaturesColumn}' has rows of {sideAcc.Width} and {s.Length} values; side features need a fixed length.");
                for (int i = 0; i < s.Length; i++) { sideAcc.Add(i, s[i]); if (!float.IsFinite(s[i])) nonFinite++; }
            }
            if (seq is not null)
            {
                seq(ref buf);
                int i = 0;
                foreach (var v in buf.DenseValues()) { valueAcc.Add(i % f, v); if (!float.IsFinite(v)) nonFinite++; i++; }
            }
        }
        return new DataStatistics
        {
            Rows = rows,
            SkippedRows = skipped,
            ClassCounts = classes,
            NonFiniteValues = nonFinite,
            TargetMean = columns.LabelKind == LabelKind.Float ? (float)targetAcc.Mean(0) : 0,
            TargetStd = columns.LabelKind == LabelKind.Float ? (float)targetAcc.Std(0) : 1,
            SideLength = sideAcc.Width,
            SideMean = sideAcc.Width > 0 ? sideAcc.Means() : null,
            SideStd = sideAcc.Width > 0 ? sideAcc.Stds() : null,
            ValueMean = valueAcc.Width > 0 ? valueAcc.Means() : null,
            ValueStd = valueAcc.Width > 0 ? valueAcc.Stds() : null,
        };
    }

    private sealed class Moments(int width)
    {
        private readonly double[] _sum = new double[width];
        private readonly double[] _sq = new double[width];
        private readonly long[] _n = new long[width];
        public int Width => _sum.Length;

        public void Add(int i, float v)
        {
            if (!float.IsFinite(v)) return;
            _sum[i] += v; _sq[i] += (double)v * v; _n[i]++;
        }

        public double Mean(int i) => _n[i] == 0 ? 0 : _sum[i] / _n[i];

        public double Std(int i)
        {
            if (_n[i] < 2) return 1;
            double m = Mean(i), var = Math.Max(0, _sq[i] / _n[i] - m * m);
            double s = Math.Sqrt(var);
            return s < 1e-6 ? 1 : s;
        }

        public float[] Means() => Enumerable.Range(0, Width).Select(i => (float)Mean(i)).ToArray();
        public float[] Stds() => Enumerable.Range(0, Width).Select(i => (float)Std(i)).ToArray();
    }
}

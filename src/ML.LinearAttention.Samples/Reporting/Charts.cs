using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>The PNG charts written next to a trained model: training curves and a confusion matrix.</summary>
public static class Charts
{
    private const int Scale = 2; // font scale of labels

    /// <summary>
    /// Two panels: training loss per logged step (raw, light, and smoothed, dark) and the validation metric per epoch.
    /// </summary>
    public static byte[] TrainingCurves(IReadOnlyList<(double Step, double Loss)> loss, IReadOnlyList<(double Epoch, double Metric)> validation,
        string metricName, string title)
    {
        var c = new Canvas(1000, 420, Rgb.White);
        c.TextCentered(c.Width / 2, 12, title, Rgb.Black, Scale);
        var finite = loss.Where(p => double.IsFinite(p.Loss)).ToList();
        var smooth = Smooth(finite);
        Panel(c, new Box(70, 60, 400, 300), "TRAINING LOSS", "STEP",
            new[] { (finite, Rgb.LightBlue, 1, false), (smooth, Rgb.Blue, 2, false) });
        var val = validation.Where(p => double.IsFinite(p.Metric)).ToList();
        Panel(c, new Box(570, 60, 400, 300), ("VALIDATION " + metricName).ToUpperInvariant(), "EPOCH",
            new[] { (val, Rgb.Orange, 2, true) }, emptyNote: "NO VALIDATION DATA");
        return c.ToPng();
    }

    /// <summary>
    /// A heat map of counts (rows: actual class, columns: predicted), each row shaded by its share (row-normalised),
    /// with the counts written in the cells and per-class recall on the right.
    /// </summary>
    public static byte[] ConfusionMatrix(IReadOnlyList<string> classes, IReadOnlyList<IReadOnlyList<double>> counts, string title)
    {
        int n = classes.Count;
        if (n == 0 || counts.Count != n || counts.Any(r => r.Count != n)) throw new ArgumentException("The confusion matrix must be square with one row and column per class.");
        var labels = classes.Select(s => s.Length > 12 ? s[..11] + "." : s).ToList();
        int cell = Math.Clamp(480 / n, 28, 90);
        int labelWidth = labels.Max(l => BitmapFont.Measure(l, Scale)) + 16;
        int left = 40 + labelWidth, top = 70;
        int width = left + n * cell + 120, height = top + n * cell + labelWidth + 50;
        var c = new Canvas(Math.Max(width, BitmapFont.Measure(title, Scale) + 40), height, Rgb.White);
        c.TextCentered(c.Width / 2, 14, title, Rgb.Black, Scale);
        c.TextCentered(left + n * cell / 2, top - 22, "PREDICTED", Rgb.Axis, Scale);
        c.TextVertical(10, top + n * cell / 2, "ACTUAL", Rgb.Axis, Scale);
        c.TextCentered(left + n * cell + 60, top - 22, "RECALL", Rgb.Axis, Scale);
        var dark = new Rgb(8, 48, 107);
        for (int i = 0; i < n; i++)
        {
            double rowTotal = counts[i].Sum();
            c.TextRight(left - 8, top + i * cell + cell / 2 - 7, labels[i], Rgb.Black, Scale);
            for (int j = 0; j < n; j++)
            {
                double share = rowTotal > 0 ? counts[i][j] / rowTotal : 0;
                var fill = Rgb.Lerp(new Rgb(247, 251, 255), dark, share);
                c.FillRect(left + j * cell, top + i * cell, cell, cell, fill);
                var text = counts[i][j].ToString("0", CultureInfo.InvariantCulture);
                int textScale = BitmapFont.Measure(text, Scale) <= cell - 6 ? Scale : 1;
                c.TextCentered(left + j * cell + cell / 2, top + i * cell + cell / 2 - 3 * textScale, text, share > 0.5 ? Rgb.White : Rgb.Black, textScale);
            }
            var recall = rowTotal > 0 ? counts[i][i] / rowTotal : double.NaN;
            c.Text(left + n * cell + 20, top + i * cell + cell / 2 - 7, double.IsNaN(recall) ? "-" : recall.ToString("P0", CultureInfo.InvariantCulture).Replace(" ", ""), Rgb.Black, Scale);
        }
        for (int k = 0; k <= n; k++)
        {
            c.Line(left, top + k * cell, left + n * cell, top + k * cell, Rgb.White);
            c.Line(left + k * cell, top, left + k * cell, top + n * cell, Rgb.White);
        }
        c.Rect(left - 1, top - 1, n * cell + 2, n * cell + 2, Rgb.Axis);
        for (int j = 0; j < n; j++) c.TextVertical(left + j * cell + cell / 2 - 7, top + n * cell + 10 + BitmapFont.Measure(labels[j], Scale) / 2, labels[j], Rgb.Black, Scale);
        return c.ToPng();
    }

    private readonly record struct Box(int X, int Y, int W, int H);

    private static void Panel(Canvas c, Box b, string title, string xLabel, IEnumerable<(List<(double X, double Y)> Points, Rgb Color, int Thickness, bool Dots)> series, string? emptyNote = null)
    {
        var all = series.ToList();
        c.TextCentered(b.X + b.W / 2, b.Y - 22, title, Rgb.Black, Scale);
        c.TextCentered(b.X + b.W / 2, b.Y + b.H + 32, xLabel, Rgb.Axis, Scale);
        var points = all.SelectMany(s => s.Points).ToList();
        if (points.Count == 0)
        {
            c.Rect(b.X, b.Y, b.W, b.H, Rgb.Axis);
            c.TextCentered(b.X + b.W / 2, b.Y + b.H / 2 - 7, emptyNote ?? "NO DATA", Rgb.Axis, Scale);
            return;
        }
        var (x0, x1, xt) = Ticks(points.Min(p => p.X), points.Max(p => p.X), integer: points.All(p => p.X == Math.Round(p.X)));
        var (y0, y1, yt) = Ticks(points.Min(p => p.Y), points.Max(p => p.Y));
        int Px(double x) => b.X + (int)Math.Round((x - x0) / (x1 - x0) * (b.W - 1));
        int Py(double y) => b.Y + b.H - 1 - (int)Math.Round((y - y0) / (y1 - y0) * (b.H - 1));
        foreach (var t in yt)
        {
            c.Line(b.X, Py(t), b.X + b.W - 1, Py(t), Rgb.Grid);
            c.TextRight(b.X - 6, Py(t) - 3, Format(t), Rgb.Axis, 1);
        }
        foreach (var t in xt)
        {
            c.Line(Px(t), b.Y, Px(t), b.Y + b.H - 1, Rgb.Grid);
            c.TextCentered(Px(t), b.Y + b.H + 8, Format(t), Rgb.Axis, 1);
        }
        c.Rect(b.X, b.Y, b.W, b.H, Rgb.Axis);
        foreach (var (pts, color, thickness, dots) in all)
        {
            for (int i = 1; i < pts.Count; i++) c.Line(Px(pts[i - 1].X), Py(pts[i - 1].Y), Px(pts[i].X), Py(pts[i].Y), color, thickness);
            if (dots || pts.Count == 1) foreach (var p in pts) c.Dot(Px(p.X), Py(p.Y), 4, color);
        }
    }

    /// <summary>Exponential moving average (bias-corrected), for a readable loss curve.</summary>
    private static List<(double X, double Y)> Smooth(List<(double X, double Y)> points)
    {
        double alpha = points.Count > 20 ? 2.0 / (points.Count / 10.0 + 1) : 1;
        double ema = 0, weight = 0;
        var result = new List<(double, double)>(points.Count);
        foreach (var (x, y) in points)
        {
            ema = alpha * y + (1 - alpha) * ema;
            weight = alpha + (1 - alpha) * weight;
            result.Add((x, ema / weight));
        }
        return result;
    }

    /// <summary>Round axis limits and about five ticks at 1, 2 or 5 × 10^k.</summary>
    public static (double Min, double Max, List<double> Ticks) Ticks(double min, double max, bool integer = false)
    {
        if (min == max) { double pad = Math.Abs(min) > 0 ? Math.Abs(min) * 0.1 : 1; min -= pad; max += pad; }
        double raw = (max - min) / 5;
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
        if (integer) step = Math.Max(1, Math.Round(step)); // steps and epochs: whole ticks
        double lo = Math.Floor(min / step) * step, hi = Math.Ceiling(max / step) * step;
        var ticks = new List<double>();
        for (double t = lo; t <= hi + step / 2; t += step) ticks.Add(Math.Round(t / step) * step);
        return (lo, hi, ticks);
    }

    private static string Format(double v)
        => Math.Abs(v) >= 1e5 || (Math.Abs(v) < 1e-3 && v != 0) ? v.ToString("0.#E+0", CultureInfo.InvariantCulture) : v.ToString("0.###", CultureInfo.InvariantCulture);
}

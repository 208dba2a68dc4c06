using System.Globalization;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>One line of a <see cref="PlotLines"/> chart; a null Y leaves a gap (e.g. out of memory).</summary>
public sealed record PlotSeries(string Name, IReadOnlyList<(double X, double? Y)> Points);

/// <summary>
/// A small line-chart rasteriser for the benchmark plots (written as PNG by <see cref="PlotPng"/>): log-2 or linear
/// x axis, linear y axis from zero with round ticks, grid, markers, a legend, and text in a built-in 5×7 pixel font.
/// </summary>
public sealed class PlotLines
{
    public string Title { get; init; } = "";
    public string XLabel { get; init; } = "";
    public string YLabel { get; init; } = "";
    /// <summary>Log-2 x axis (sequence lengths).</summary>
    public bool LogX { get; init; } = true;
    /// <summary>Formats x tick labels (default: 512, 2K, 64K).</summary>
    public Func<double, string> XFormat { get; init; } = v => ShortNumber(v, binary: true);
    /// <summary>Formats y tick labels (default: 250K, 1.5M).</summary>
    public Func<double, string> YFormat { get; init; } = v => ShortNumber(v);
    public List<PlotSeries> Series { get; } = new();

    private static readonly (byte R, byte G, byte B)[] Palette =
    {
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    };

    /// <summary>Renders the chart and writes it as a PNG file.</summary>
    public void Save(string path, int width = 1200, int height = 640)
        => File.WriteAllBytes(path, PlotPng.Encode(width, height, Render(width, height)));

    /// <summary>RGB pixels of the chart (3 bytes per pixel, row by row).</summary>
    public byte[] Render(int width, int height)
    {
        var canvas = new Canvas(width, height);
        const int scale = 2;
        int legendWidth = Math.Max(160, Series.Count == 0 ? 0 : Series.Max(s => s.Name.Length) * 6 * scale + 80);
        int left = 110, right = width - legendWidth - 20, top = 50, bottom = height - 70;
        if (right - left < 100 || bottom - top < 100) throw new ArgumentException($"A {width}×{height} image is too small for this chart.");
        canvas.Text(Title, (width - Canvas.TextWidth(Title, scale)) / 2, 14, scale, (0, 0, 0));

        var xs = Series.SelectMany(s => s.Points).Select(p => p.X).Where(x => !LogX || x > 0).Distinct().OrderBy(x => x).ToList();
        var ys = Series.SelectMany(s => s.Points).Where(p => p.Y is double y && double.IsFinite(y)).Select(p => p.Y!.Value).ToList();
        double xMin = xs.Count > 0 ? xs[0] : 1, xMax = xs.Count > 0 ? xs[^1] : 2;
        if (xMax <= xMin) xMax = xMin * 2;
        double yStep = NiceStep((ys.Count > 0 ? ys.Max() : 1) / 5);
        double yMax = yStep * Math.Ceiling((ys.Count > 0 ? Math.Max(ys.Max(), 1e-12) : 1) / yStep);
        double Tx(double x) => LogX ? Math.Log2(x) : x;
        int Px(double x) => left + (int)Math.Round((Tx(x) - Tx(xMin)) / (Tx(xMax) - Tx(xMin)) * (right - left));
        int Py(double y) => bottom - (int)Math.Round(y / yMax * (bottom - top));

        for (double y = 0; y <= yMax * 1.0001; y += yStep)
        {
            int py = Py(y);
            canvas.Line(left, py, right, py, (225, 225, 225), 1);
            string label = YFormat(y);
            canvas.Text(label, left - 10 - Canvas.TextWidth(label, scale), py - 7, scale, (60, 60, 60));
        }
        foreach (double x in xs)
        {
            int px = Px(x);
            canvas.Line(px, top, px, bottom, (225, 225, 225), 1);
            string label = XFormat(x);
            canvas.Text(label, px - Canvas.TextWidth(label, scale) / 2, bottom + 10, scale, (60, 60, 60));
        }
        canvas.Line(left, bottom, right, bottom, (0, 0, 0), 2);
        canvas.Line(left, top, left, bottom, (0, 0, 0), 2);
        canvas.Text(XLabel, left + (right - left - Canvas.TextWidth(XLabel, scale)) / 2, bottom + 38, scale, (0, 0, 0));
        canvas.VerticalText(YLabel, 16, top + (bottom - top + Canvas.TextWidth(YLabel, scale)) / 2, scale, (0, 0, 0));

        for (int i = 0; i < Series.Count; i++)
        {
            var color = Palette[i % Palette.Length];
            (int X, int Y)? previous = null;
            foreach (var (x, y) in Series[i].Points.OrderBy(p => p.X))
            {
                if (y is not double v || !double.IsFinite(v) || (LogX && x <= 0)) { previous = null; continue; }
                var point = (Px(x), Py(v));
                if (previous is { } p) canvas.Line(p.X, p.Y, point.Item1, point.Item2, color, 3);
                canvas.Fill(point.Item1 - 4, point.Item2 - 4, 9, 9, color);
                previous = point;
            }
            int ly = top + 10 + i * 26;
            canvas.Fill(right + 25, ly + 2, 26, 6, color);
            canvas.Text(Series[i].Name, right + 58, ly - 2, scale, (0, 0, 0));
        }
        return canvas.Pixels;
    }

    /// <summary>1500 → "1.5K", 1.5e6 → "1.5M"; with <paramref name="binary"/> multiples of 1024 use K = 1024 (2048 → "2K").</summary>
    public static string ShortNumber(double v, bool binary = false)
    {
        static string F(double x) => x.ToString(x >= 100 || x == Math.Floor(x) ? "0" : "0.#", CultureInfo.InvariantCulture);
        double a = Math.Abs(v);
        if (a >= 1e9) return F(v / 1e9) + "G";
        if (a >= 1e6) return F(v / 1e6) + "M";
        if (binary && a >= 1024 && Math.Abs(v % 1024) < 1e-9) return F(v / 1024) + "K";
        if (a >= 1e3) return F(v / 1e3) + "K";
        return a < 10 && v != Math.Floor(v) ? v.ToString("0.##", CultureInfo.InvariantCulture) : F(v);
    }

    private static double NiceStep(double rough)
    {
        if (rough <= 0 || !double.IsFinite(rough)) return 1;
        double p = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        double m = rough / p;
        return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    }

    /// <summary>RGB pixel buffer with lines, rectangles and 5×7 text.</summary>
    private sealed class Canvas
    {
        private readonly int _w, _h;
        public byte[] Pixels { get; }

        public Canvas(int width, int height)
        {
            _w = width; _h = height;
            Pixels = new byte[width * height * 3];
            Array.Fill(Pixels, (byte)255);
        }

        private void Set(int x, int y, (byte R, byte G, byte B) c)
        {
            if ((uint)x >= (uint)_w || (uint)y >= (uint)_h) return;
            int i = (y * _w + x) * 3;
            Pixels[i] = c.R; Pixels[i + 1] = c.G; Pixels[i + 2] = c.B;
        }

        public void Fill(int x, int y, int w, int h, (byte, byte, byte) c)
        {
            for (int j = y; j < y + h; j++)
                for (int i = x; i < x + w; i++) Set(i, j, c);
        }

        /// <summary>Bresenham line drawn with a square pen of <paramref name="thickness"/> pixels.</summary>
        public void Line(int x0, int y0, int x1, int y1, (byte, byte, byte) c, int thickness)
        {
            int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
            int half = thickness / 2;
            while (true)
            {
                Fill(x0 - half, y0 - half, thickness, thickness, c);
                if (x0 == x1 && y0 == y1) break;
                int e2 = 2 * err;
                if (e2 >= dy) { err += dy; x0 += sx; }
                if (e2 <= dx) { err += dx; y0 += sy; }
            }
        }

        public static int TextWidth(string text, int scale) => text.Length * 6 * scale;

        public void Text(string text, int x, int y, int scale, (byte, byte, byte) c) => Glyphs(text, scale, c, (gx, gy) => (x + gx, y + gy));

        /// <summary>Text rotated a quarter turn anticlockwise, its baseline start at (x, y), reading upwards.</summary>
        public void VerticalText(string text, int x, int y, int scale, (byte, byte, byte) c) => Glyphs(text, scale, c, (gx, gy) => (x + gy, y - gx));

        private void Glyphs(string text, int scale, (byte, byte, byte) c, Func<int, int, (int X, int Y)> place)
        {
            for (int k = 0; k < text.Length; k++)
            {
                int code = text[k] is >= ' ' and <= '~' ? text[k] - ' ' : '?' - ' ';
                for (int col = 0; col < 5; col++)
                {
                    int bits = Convert.ToInt32(Font.Substring((code * 5 + col) * 2, 2), 16);
                    for (int row = 0; row < 8; row++)
                    {
                        if ((bits >> row & 1) == 0) continue;
                        for (int sy = 0; sy < scale; sy++)
                            for (int sx = 0; sx < scale; sx++)
                            {
                                var (px, py) = place((k * 6 + col) * scale + sx, row * scale + sy);
                                Set(px, py, c);
                            }
                    }
                }
            }
        }

        /// <summary>The classic 5×7 (+descender) LCD font, ASCII 32–126, five column bytes per glyph, bit 0 at the top.</summary>
        private const string Font =
        "000000000000005F00000007000700147F147F14242A7F2A12231308646236495620500008070300001C2241000041221C00" +
        "2A1C7F1C2A08083E080800807030000808080808000060600020100804023E5149453E00427F400072494949462141494D33" +
        "1814127F1027454545393C4A49493141211109073649494936464949291E0000140000004034000000081422411414141414" +
        "004122140802015909063E415D594E7C1211127C7F494949363E414141227F4141413E7F494949417F090909013E41415173" +
        "7F0808087F00417F41002040413F017F081422417F404040407F021C027F7F0408107F3E4141413E7F090909063E4151215E" +
        "7F09192946264949493203017F01033F4040403F1F2040201F3F4038403F631408146303047804036159494D43007F414141" +
        "0204081020004141417F04020102044040404040000307080020545478407F284444383844444428384444287F3854545418" +
        "00087E090218A4A49C787F0804047800447D40002040403D007F1028440000417F40007C047804787C080404783844444438" +
        "FC1824241818242418FC7C08040408485454542404043F44243C4040207C1C2040201C3C4030403C44281028444C9090907C" +
        "4464544C440008364100000077000000413608000201020402";
    }
}

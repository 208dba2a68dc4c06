namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>An RGB raster with the few primitives charts need: rectangles, lines, dots and bitmap text.</summary>
public sealed class Canvas
{
    private readonly byte[] _rgb;

    /// <summary>A canvas filled with <paramref name="background"/>.</summary>
    public Canvas(int width, int height, Rgb background)
    {
        Width = width;
        Height = height;
        _rgb = new byte[width * height * 3];
        FillRect(0, 0, width, height, background);
    }

    public int Width { get; }
    public int Height { get; }

    /// <summary>The PNG file of the canvas.</summary>
    public byte[] ToPng() => PngWriter.Encode(Width, Height, _rgb);

    /// <summary>The colour at (x, y).</summary>
    public Rgb this[int x, int y]
    {
        get { int i = (y * Width + x) * 3; return new Rgb(_rgb[i], _rgb[i + 1], _rgb[i + 2]); }
    }

    public void Set(int x, int y, Rgb c)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int i = (y * Width + x) * 3;
        _rgb[i] = c.R; _rgb[i + 1] = c.G; _rgb[i + 2] = c.B;
    }

    public void FillRect(int x, int y, int w, int h, Rgb c)
    {
        for (int yy = Math.Max(0, y); yy < Math.Min(Height, y + h); yy++)
            for (int xx = Math.Max(0, x); xx < Math.Min(Width, x + w); xx++) Set(xx, yy, c);
    }

    public void Rect(int x, int y, int w, int h, Rgb c)
    {
        Line(x, y, x + w - 1, y, c); Line(x, y + h - 1, x + w - 1, y + h - 1, c);
        Line(x, y, x, y + h - 1, c); Line(x + w - 1, y, x + w - 1, y + h - 1, c);
    }

    /// <summary>Bresenham line, <paramref name="thickness"/> pixels wide.</summary>
    public void Line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1)
    {
        int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1, err = dx + dy;
        int r0 = -(thickness - 1) / 2, r1 = thickness / 2;
        while (true)
        {
            for (int oy = r0; oy <= r1; oy++) for (int ox = r0; ox <= r1; ox++) Set(x0 + ox, y0 + oy, c);
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) { err += dy; x0 += sx; }
            if (e2 <= dx) { err += dx; y0 += sy; }
        }
    }

    public void Dot(int x, int y, int radius, Rgb c)
    {
        for (int dy = -radius; dy <= radius; dy++)
            for (int dx = -radius; dx <= radius; dx++)
                if (dx * dx + dy * dy <= radius * radius) Set(x + dx, y + dy, c);
    }

    /// <summary>Draws <paramref name="text"/> with its top-left corner at (x, y).</summary>
    public void Text(int x, int y, string text, Rgb c, int scale = 1)
    {
        foreach (var ch in text)
        {
            var g = BitmapFont.Glyph(ch);
            for (int row = 0; row < BitmapFont.Height; row++)
                for (int col = 0; col < BitmapFont.Width; col++)
                    if ((g[row] >> (BitmapFont.Width - 1 - col) & 1) != 0) FillRect(x + col * scale, y + row * scale, scale, scale, c);
            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>Text centred on x.</summary>
    public void TextCentered(int cx, int y, string text, Rgb c, int scale = 1) => Text(cx - BitmapFont.Measure(text, scale) / 2, y, text, c, scale);

    /// <summary>Text ending at x.</summary>
    public void TextRight(int right, int y, string text, Rgb c, int scale = 1) => Text(right - BitmapFont.Measure(text, scale), y, text, c, scale);

    /// <summary>Text drawn bottom-to-top (rotated 90° left), centred on y.</summary>
    public void TextVertical(int x, int cy, string text, Rgb c, int scale = 1)
    {
        int y = cy + BitmapFont.Measure(text, scale) / 2;
        foreach (var ch in text)
        {
            var g = BitmapFont.Glyph(ch);
            for (int row = 0; row < BitmapFont.Height; row++)
                for (int col = 0; col < BitmapFont.Width; col++)
                    if ((g[row] >> (BitmapFont.Width - 1 - col) & 1) != 0) FillRect(x + row * scale, y - (col + 1) * scale, scale, scale, c);
            y -= BitmapFont.Advance * scale;
        }
    }
}

/// <summary>An sRGB colour.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public static readonly Rgb White = new(255, 255, 255);
    public static readonly Rgb Black = new(20, 20, 20);
    public static readonly Rgb Grid = new(226, 226, 226);
    public static readonly Rgb Axis = new(90, 90, 90);
    public static readonly Rgb Blue = new(31, 119, 180);
    public static readonly Rgb LightBlue = new(174, 199, 232);
    public static readonly Rgb Orange = new(230, 120, 20);

    /// <summary>Linear blend from <paramref name="a"/> (t = 0) to <paramref name="b"/> (t = 1).</summary>
    public static Rgb Lerp(Rgb a, Rgb b, double t)
    {
        t = Math.Clamp(t, 0, 1);
        return new((byte)(a.R + (b.R - a.R) * t), (byte)(a.G + (b.G - a.G) * t), (byte)(a.B + (b.B - a.B) * t));
    }
}

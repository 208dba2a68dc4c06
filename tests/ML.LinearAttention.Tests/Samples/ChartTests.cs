using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

public sealed class ChartTests
{
    /// <summary>A strict PNG reader for the encoder's output: chunk CRCs, IHDR, and the inflated scanlines.</summary>
    internal static (int Width, int Height, byte[] Rgb) Decode(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png.Take(8));
        int pos = 8, width = 0, height = 0;
        var idat = new MemoryStream();
        var types = new List<string>();
        while (pos < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            var type = System.Text.Encoding.ASCII.GetString(png, pos + 4, 4);
            var data = png.AsSpan(pos + 8, length);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + length));
            Assert.Equal(PngWriter.Crc32(0, png.AsSpan(pos + 4, 4 + length)), crc);
            types.Add(type);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.Equal(new byte[] { 8, 2, 0, 0, 0 }, data[8..].ToArray());
            }
            if (type == "IDAT") idat.Write(data);
            pos += 12 + length;
        }
        Assert.Equal(new[] { "IHDR", "IDAT", "IEND" }, types);
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        var raw = new MemoryStream();
        z.CopyTo(raw);
        var bytes = raw.ToArray();
        Assert.Equal((1 + width * 3) * height, bytes.Length);
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, bytes[y * (1 + width * 3)]);
            Array.Copy(bytes, y * (1 + width * 3) + 1, rgb, y * width * 3, width * 3);
        }
        return (width, height, rgb);
    }

    [Fact]
    public void PngEncoderWritesValidChunksAndExactPixels()
    {
        // The CRC of "IEND" with no data is the well-known AE 42 60 82.
        Assert.Equal(0xAE426082u, PngWriter.Crc32(0, "IEND"u8));
        var c = new Canvas(7, 5, Rgb.White);
        c.Set(0, 0, new Rgb(255, 0, 0));
        c.Line(0, 4, 6, 4, Rgb.Blue);
        var (w, h, rgb) = Decode(c.ToPng());
        Assert.Equal((7, 5), (w, h));
        Assert.Equal(new byte[] { 255, 0, 0 }, rgb[..3]);
        Assert.Equal(new byte[] { 255, 255, 255 }, rgb[3..6]);
        int last = (4 * 7 + 6) * 3;
        Assert.Equal(new byte[] { Rgb.Blue.R, Rgb.Blue.G, Rgb.Blue.B }, rgb[last..(last + 3)]);
    }

    [Fact]
    public void ChartsRenderCurvesAndAConfusionMatrix()
    {
        var loss = Enumerable.Range(1, 120).Select(i => ((double)i, 1.4 * Math.Exp(-i / 40.0) + 0.3 + 0.05 * Math.Sin(i))).ToList();
        var val = new List<(double, double)> { (1, 0.61), (2, 0.70), (3, 0.74) };
        var (w, h, rgb) = Decode(Charts.TrainingCurves(loss, val, "accuracy", "TRAINING - TICKETS.ZIP"));
        Assert.Equal((1000, 420), (w, h));
        Assert.Contains(Enumerable.Range(0, w * h), i => rgb[i * 3] == Rgb.Blue.R && rgb[i * 3 + 1] == Rgb.Blue.G && rgb[i * 3 + 2] == Rgb.Blue.B); // the loss line
        Assert.Contains(Enumerable.Range(0, w * h), i => rgb[i * 3] == Rgb.Orange.R && rgb[i * 3 + 1] == Rgb.Orange.G); // the validation line

        var counts = new IReadOnlyList<double>[] { new double[] { 50, 3, 1 }, new double[] { 4, 40, 6 }, new double[] { 0, 5, 45 } };
        var matrix = Charts.ConfusionMatrix(new[] { "Low", "Medium", "Urgent" }, counts, "CONFUSION MATRIX");
        var (mw, mh, _) = Decode(matrix);
        Assert.True(mw > 300 && mh > 300);
        Assert.Throws<ArgumentException>(() => Charts.ConfusionMatrix(new[] { "a" }, counts, "x"));

        var (lo, hi, ticks) = Charts.Ticks(0.31, 1.72);
        Assert.Equal((0.0, 2.0), (lo, hi));
        Assert.Equal(new[] { 0.0, 0.5, 1.0, 1.5, 2.0 }, ticks.Select(t => Math.Round(t, 6)));

        if (Environment.GetEnvironmentVariable("LA_CHART_DIR") is { } dir)
        {
            File.WriteAllBytes(Path.Combine(dir, "curves.png"), Charts.TrainingCurves(loss, val, "accuracy", "TRAINING - TICKETS.ZIP"));
            File.WriteAllBytes(Path.Combine(dir, "confusion.png"), matrix);
        }
    }
}

using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.LinearAttention.Tests.Vision;

/// <summary>Real image data sets of ../shared/data: MNIST t10k (IDX files) and the 200-photo flowers set.</summary>
public static class ImageData
{
    public const string Mnist = "mnist-t10k";
    public const string Flowers = "flowers-small";

    /// <summary>Rows <paramref name="skip"/>..<paramref name="skip"/>+<paramref name="count"/> of MNIST t10k as 28×28 MLImages (grey in B, G and R).</summary>
    public static List<DigitRow> MnistRows(int skip, int count)
    {
        var dir = SharedData.PathOf(Mnist);
        using var images = new GZipStream(File.OpenRead(Path.Combine(dir, "t10k-images-idx3-ubyte.gz")), CompressionMode.Decompress);
        using var labels = new GZipStream(File.OpenRead(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz")), CompressionMode.Decompress);
        images.ReadExactly(new byte[16]);
        labels.ReadExactly(new byte[8]);
        var pixels = new byte[784];
        var label = new byte[1];
        var rows = new List<DigitRow>(count);
        for (int i = 0; i < skip + count; i++)
        {
            images.ReadExactly(pixels);
            labels.ReadExactly(label);
            if (i < skip) continue;
            var bgra = new byte[784 * 4];
            for (int j = 0; j < 784; j++) { bgra[4 * j] = bgra[4 * j + 1] = bgra[4 * j + 2] = pixels[j]; bgra[4 * j + 3] = 255; }
            rows.Add(new DigitRow { Image = MLImage.CreateFromPixels(28, 28, MLPixelFormat.Bgra32, bgra), Digit = label[0].ToString() });
        }
        return rows;
    }

    /// <summary>The flowers index (relative path, class), in file order.</summary>
    public static List<FlowerRow> FlowerIndex()
        => File.ReadLines(Path.Combine(SharedData.PathOf(Flowers), "index.tsv")).Skip(1)
            .Select(l => l.Split('\t')).Select(f => new FlowerRow { Path = f[0], Flower = f[1] }).ToList();

    /// <summary>A fixed 160/40 split of the flowers, stratified (32 + 8 per class), seeded.</summary>
    public static (List<FlowerRow> Train, List<FlowerRow> Test) FlowerSplit()
    {
        var rng = new Random(5);
        var train = new List<FlowerRow>();
        var test = new List<FlowerRow>();
        foreach (var g in FlowerIndex().GroupBy(r => r.Flower))
        {
            var shuffled = g.OrderBy(_ => rng.Next()).ToList();
            test.AddRange(shuffled.Take(8));
            train.AddRange(shuffled.Skip(8));
        }
        return (train.OrderBy(_ => rng.Next()).ToList(), test);
    }

    public static string FlowersFolder => SharedData.PathOf(Flowers);

    /// <summary>Flowers decoded and centre-cropped to 112 × 112 once (the estimators' own resize), as MLImages.</summary>
    public static List<FlowerImageRow> Decoded112(IEnumerable<FlowerRow> rows)
        => rows.Select(r =>
        {
            var rgb = LinearAttention.Data.ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(FlowersFolder, r.Path)),
                new LinearAttention.Vision.ImageGeometry(112, 112, LinearAttention.Vision.ImageResizeMode.CenterCrop));
            var bgra = new byte[112 * 112 * 4];
            for (int i = 0; i < 112 * 112; i++) { bgra[4 * i] = rgb[3 * i + 2]; bgra[4 * i + 1] = rgb[3 * i + 1]; bgra[4 * i + 2] = rgb[3 * i]; bgra[4 * i + 3] = 255; }
            return new FlowerImageRow { Image = MLImage.CreateFromPixels(112, 112, MLPixelFormat.Bgra32, bgra), Flower = r.Flower };
        }).ToList();
}

public sealed class FlowerImageRow
{
    [ImageType(112, 112)]
    public MLImage Image { get; set; } = null!;
    public string Flower { get; set; } = "";
}

public sealed class DigitRow
{
    [ImageType(28, 28)]
    public MLImage Image { get; set; } = null!;
    public string Digit { get; set; } = "";
}

public sealed class FlowerRow
{
    public string Path { get; set; } = "";
    public string Flower { get; set; } = "";
}

/// <summary>A flower as encoded file bytes (the byte[] input of the estimator).</summary>
public sealed class FlowerBytesRow
{
    public byte[] Image { get; set; } = Array.Empty<byte>();
    public string Flower { get; set; } = "";
}

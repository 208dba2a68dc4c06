using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Vision;

namespace Microsoft.ML.LinearAttention.Data;

/// <summary>
/// Reads the image of the current row, from an <see cref="MLImage"/> column (LoadImages / LoadRawImageBytes + a
/// decoder) or from encoded bytes (PNG, JPEG, BMP, GIF, WEBP: whatever ML.NET's MLImage decodes), and resizes it to an
/// <see cref="ImageGeometry"/> as RGB bytes (height × width × 3, row-major). Resizing is bilinear with antialiasing
/// (as torchvision's Resize), done once per image on the CPU; normalisation and augmentation happen later on the
/// model's device.
/// </summary>
public static class ImageDecoder
{
    /// <summary>True for the column types the image estimators read: MLImage, or a vector of bytes.</summary>
    public static bool IsImageType(DataViewType type)
        => type is ImageDataViewType || type is VectorDataViewType v && v.ItemType == NumberDataViewType.Byte;

    /// <summary>A reader of the current row's image of <paramref name="column"/>, resized to <paramref name="geometry"/>.</summary>
    public static Func<byte[]> Reader(DataViewRow row, DataViewSchema.Column column, ImageGeometry geometry)
    {
        if (column.Type is ImageDataViewType)
        {
            var getter = row.GetGetter<MLImage>(column);
            MLImage image = null!;
            return () =>
            {
                getter(ref image);
                if (image is null)
                    throw new InvalidDataException($"Row {row.Position} of the image column '{column.Name}' has no image (an empty path or an unreadable file).");
                return Resize(image, geometry);
            };
        }
        if (column.Type is VectorDataViewType v && v.ItemType == NumberDataViewType.Byte)
        {
            var getter = row.GetGetter<VBuffer<byte>>(column);
            VBuffer<byte> buffer = default;
            return () =>
            {
                getter(ref buffer);
                if (buffer.Length == 0)
                    throw new InvalidDataException($"Row {row.Position} of the image column '{column.Name}' holds no bytes.");
                return Decode(buffer.DenseValues().ToArray(), geometry, $"row {row.Position} of column '{column.Name}'");
            };
        }
        throw new ArgumentOutOfRangeException($"The image column '{column.Name}' has type {column.Type}; expected an Image (MLImage) or a vector of Byte.", (Exception?)null);
    }

    /// <summary>Decodes encoded image bytes and resizes them.</summary>
    public static byte[] Decode(byte[] encoded, ImageGeometry geometry, string what = "image bytes")
    {
        MLImage image;
        try
        {
            using var stream = new MemoryStream(encoded, writable: false);
            image = MLImage.CreateFromStream(stream);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or IOException)
        {
            throw new InvalidDataException($"The {what} ({encoded.Length} bytes) could not be decoded as an image (PNG, JPEG, BMP, GIF or WEBP): {e.Message}", e);
        }
        using (image) return Resize(image, geometry);
    }

    /// <summary>An image as RGB bytes of <paramref name="geometry"/>'s size.</summary>
    public static byte[] Resize(MLImage image, ImageGeometry geometry)
    {
        ArgumentNullException.ThrowIfNull(image);
        var rgb = ToRgb(image);
        return Resize(rgb, image.Width, image.Height, geometry);
    }

    /// <summary>RGB bytes (height × width × 3) of one size resized to <paramref name="geometry"/>.</summary>
    public static byte[] Resize(byte[] rgb, int width, int height, ImageGeometry geometry)
    {
        if (rgb.Length != (long)width * height * 3)
            throw new ArgumentException($"An RGB image of {width}×{height} has {width * height * 3} bytes; got {rgb.Length}.");
        int tw = geometry.Width, th = geometry.Height;
        if (width == tw && height == th) return rgb;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = torch.tensor(rgb, new long[] { height, width, 3 }).permute(2, 0, 1).unsqueeze(0).to(ScalarType.Float32);
        Tensor y;
        switch (geometry.Resize)
        {
            case ImageResizeMode.Stretch:
                y = Interpolate(x, th, tw);
                break;
            case ImageResizeMode.CenterCrop:
            {
                double scale = Math.Max((double)tw / width, (double)th / height);
                long sh = Math.Max(th, (long)Math.Round(height * scale)), sw = Math.Max(tw, (long)Math.Round(width * scale));
                y = Interpolate(x, sh, sw).narrow(2, (sh - th) / 2, th).narrow(3, (sw - tw) / 2, tw);
                break;
            }
            case ImageResizeMode.Pad:
            {
                double scale = Math.Min((double)tw / width, (double)th / height);
                long sh = Math.Clamp((long)Math.Round(height * scale), 1, th), sw = Math.Clamp((long)Math.Round(width * scale), 1, tw);
                var inner = Interpolate(x, sh, sw);
                long top = (th - sh) / 2, left = (tw - sw) / 2;
                y = nn.functional.pad(inner, new long[] { left, tw - sw - left, top, th - sh - top });
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(geometry), geometry.Resize, "Unknown ImageResizeMode.");
        }
        var bytes = y.round().clamp(0, 255).to(ScalarType.Byte).squeeze(0).permute(1, 2, 0).contiguous();
        return bytes.data<byte>().ToArray();
    }

    private static Tensor Interpolate(Tensor x, long h, long w)
    {
        if (x.shape[2] == h && x.shape[3] == w) return x;
        bool down = h < x.shape[2] || w < x.shape[3];
        return nn.functional.interpolate(x, new[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false, antialias: down);
    }

    /// <summary>The pixels of an MLImage (Bgra32 or Rgba32) as RGB bytes, row-major.</summary>
    public static byte[] ToRgb(MLImage image)
    {
        int w = image.Width, h = image.Height;
        if (w <= 0 || h <= 0) throw new InvalidDataException($"The image has no pixels ({w}×{h}).");
        bool bgra = image.PixelFormat switch
        {
            MLPixelFormat.Bgra32 => true,
            MLPixelFormat.Rgba32 => false,
            _ => throw new NotSupportedException($"Images of pixel format {image.PixelFormat} are not supported; MLImage gives Bgra32 or Rgba32 for decoded files."),
        };
        var src = image.Pixels;
        int stride = src.Length / h;
        if (stride < w * 4) throw new InvalidDataException($"The image buffer holds {src.Length} bytes, too few for {w}×{h} pixels of 4 bytes.");
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
        {
            var row = src.Slice(y * stride, w * 4);
            int o = y * w * 3;
            for (int x = 0; x < w; x++)
            {
                int i = x * 4;
                rgb[o++] = bgra ? row[i + 2] : row[i];
                rgb[o++] = row[i + 1];
                rgb[o++] = bgra ? row[i] : row[i + 2];
            }
        }
        return rgb;
    }
}

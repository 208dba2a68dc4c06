namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>How an image of any size becomes the model's input size.</summary>
public enum ImageResizeMode
{
    /// <summary>Scale the shorter side to the target, then cut the centre (keeps the aspect ratio; the usual evaluation transform).</summary>
    CenterCrop,
    /// <summary>Scale each side to the target (distorts the aspect ratio, keeps the whole image).</summary>
    Stretch,
    /// <summary>Scale the longer side to the target and pad the rest with black (keeps the aspect ratio and the whole image).</summary>
    Pad,
}

/// <summary>The size (in pixels) every image is resized to before it reaches the model, and how.</summary>
/// <param name="Width">Target width.</param>
/// <param name="Height">Target height.</param>
/// <param name="Resize">Resize mode.</param>
public sealed record ImageGeometry(int Width, int Height, ImageResizeMode Resize)
{
    /// <summary>Bytes of one decoded image (height × width × RGB).</summary>
    public int ByteCount => checked(Width * Height * 3);
}

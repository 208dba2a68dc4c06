using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// Training-time augmentation on the model's device, batched: a random resized crop (area fraction in
/// [minScale, 1], aspect ratio in [3/4, 4/3], as torchvision's RandomResizedCrop) and a random horizontal flip, both
/// as one affine sampling grid per image and one <c>grid_sample</c> for the batch. Random numbers come from torch's
/// generator of the device, so a seeded CPU run repeats exactly.
/// </summary>
public static class ImageAugmentation
{
    /// <summary>x [B, C, H, W] float → augmented [B, C, H, W] (same size).</summary>
    public static Tensor RandomResizedCropAndFlip(Tensor x, double minScale, bool flip)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0];
        var opts = (dtype: ScalarType.Float32, device: x.device);
        var area = torch.rand(b, opts.dtype, opts.device) * (1 - minScale) + minScale;
        var logRatio = (torch.rand(b, opts.dtype, opts.device) * 2 - 1) * Math.Log(4.0 / 3.0);
        var ratio = logRatio.exp();
        // side fractions of the crop (width w, height h with w·h = area, w/h = ratio), at most the whole image
        var w = (area * ratio).sqrt().clamp_max(1);
        var h = (area / ratio).sqrt().clamp_max(1);
        // crop centre in [-1, 1] coordinates, keeping the crop inside the image
        var cx = (torch.rand(b, opts.dtype, opts.device) * 2 - 1) * (1 - w);
        var cy = (torch.rand(b, opts.dtype, opts.device) * 2 - 1) * (1 - h);
        var sx = flip ? w * ((torch.rand(b, opts.dtype, opts.device) < 0.5).to(ScalarType.Float32) * 2 - 1) : w;
        var zero = torch.zeros(b, opts.dtype, opts.device);
        var theta = torch.stack(new[] { sx, zero, cx, zero, h, cy }, 1).view(b, 2, 3);
        var grid = nn.functional.affine_grid(theta, x.shape, align_corners: false);
        var y = nn.functional.grid_sample(x.to(ScalarType.Float32), grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Border, align_corners: false);
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }
}

using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>Padded batches of full softmax attention pass SDPA a key-padding mask it broadcasts, never a T × T tensor.</summary>
public class SoftmaxKeyPaddingMaskTests
{
    [Fact]
    public void PaddedFullAttentionBuildsNoSquareMask()
    {
        var mask = KernelAssert.LengthMask(new long[] { 7, 3, 1 });
        var allowed = SoftmaxKernels.AllowedMask(mask, 7, causal: false, window: 0, CPU)!;
        Assert.Equal(new long[] { 3, 1, 1, 7 }, allowed.shape);
        Assert.Equal(mask.view(3, 1, 1, 7).data<bool>().ToArray(), allowed.data<bool>().ToArray());

        // Causal and windowed attention still need pairs, so they keep the square form.
        Assert.Equal(new long[] { 3, 1, 7, 7 }, SoftmaxKernels.AllowedMask(mask, 7, causal: true, window: 0, CPU)!.shape);
        Assert.Equal(new long[] { 3, 1, 7, 7 }, SoftmaxKernels.AllowedMask(mask, 7, causal: false, window: 2, CPU)!.shape);
        Assert.Null(SoftmaxKernels.AllowedMask(null, 7, causal: true, window: 0, CPU));
    }

    [Fact]
    public void RowWithoutRealTokensGivesZerosNotNaN()
    {
        Torch.Seed();
        var mask = KernelAssert.LengthMask(new long[] { 5, 0 });
        var q = randn(2, 2, 5, 8);
        var allowed = SoftmaxKernels.AllowedMask(mask, 5, causal: false, window: 0, CPU)!;
        Assert.True(allowed[1].all().item<bool>()); // an empty row sees every key, so its softmax is defined
        var o = SoftmaxKernels.Attention(q, q, q, mask);
        Assert.False(o.isnan().any().item<bool>());
        Assert.Equal(0f, o[1].abs().max().item<float>());
        KernelAssert.Close(o[0], SoftmaxKernels.AttentionNaive(q, q, q, mask)[0], 1e-5, 1e-5, "real row");
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Soft;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class SoftTests
{
    public static IEnumerable<object[]> Cases() => new[]
    {
        // lengths (batch = count), landmarks, dtype
        new object[] { new long[] { 39 }, 6, ScalarType.Float32 },
        new object[] { new long[] { 45, 20, 2 }, 5, ScalarType.Float32 },
        new object[] { new long[] { 31, 17 }, 6, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void FastMatchesTheEigenvalueNaiveTwinOutputsAndGradients(long[] lengths, int m, ScalarType dtype)
    {
        Torch.Seed();
        long b = lengths.Length, t = lengths.Max();
        var mask = KernelAssert.LengthMask(lengths);
        var q = KernelAssert.Random(new[] { b, 2, t, 8 }, dtype);
        var landmarks = KernelAssert.Random(new[] { b, 2, (long)m, 8 }, dtype, scale: 0.6);
        var v = KernelAssert.Random(new[] { b, 2, t, 5 }, dtype);
        KernelAssert.SameOutputsAndGradients(
            i => SoftKernels.Attention(i[0], i[1], i[2], null, mask),
            i => SoftKernels.AttentionNaive(i[0], i[1], i[2], null, mask),
            new[] { q, landmarks, v }, dtype, $"soft m={m}", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void LandmarksPooledOnAPaddedGridMatchTheNaivePath()
    {
        Torch.Seed();
        // 1 class token + 4×4 grid; the second image is padded after 10 tokens, so some 2×2 cells are empty.
        var mask = KernelAssert.LengthMask(17, 10);
        var q = KernelAssert.Random(new long[] { 2, 2, 17, 8 }, ScalarType.Float32);
        var v = KernelAssert.Random(new long[] { 2, 2, 17, 4 }, ScalarType.Float32);
        KernelAssert.SameOutputsAndGradients(
            i =>
            {
                var (w, valid) = AdaptivePool.Weights(mask, 2, 17, 4, (4, 4), torch.CPU);
                Assert.False(valid.all().item<bool>());
                return SoftKernels.Attention(i[0], AdaptivePool.Pool(SoftKernels.Scale(i[0]), w), i[1], valid, mask);
            },
            i =>
            {
                var (pooled, valid) = AdaptivePool.PoolNaive(SoftKernels.Scale(i[0]), mask, 4, (4, 4));
                return SoftKernels.AttentionNaive(i[0], pooled, i[1], valid, mask);
            },
            new[] { q, v }, ScalarType.Float32, "soft on a padded grid", KernelAssert.HeadMask(mask));
    }

    [Fact]
    public void NewtonSchulzConvergesToTheInverseOfAWellConditionedKernel()
    {
        Torch.Seed();
        var l = torch.randn(1, 1, 6, 4) * 3;                           // far-apart landmarks: κ(L, L) ≈ I
        var k2 = (-(l.unsqueeze(3) - l.unsqueeze(2)).square().sum(-1) / 2).exp();
        var inv = SoftKernels.NewtonInverse(k2);
        var p = k2 + torch.eye(6) * 0.01;
        KernelAssert.Close(inv.matmul(p), torch.eye(6).expand(1, 1, 6, 6), 1e-4, 1e-4, "NS inverse");
    }

    [Fact]
    public void MixerRespectsPaddingAndTrainsOnAGrid()
    {
        Torch.Seed();
        using var mixer = new SoftMixer(new MixerConfig(16, 2), new SoftOptions { NumLandmarks = 4 });
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 12, 7, 2 }, tol: 2e-4);
        MixerAssert.TrainsOnGrid(mixer, (4, 4), 16, new long[] { 16, 16 });
        using var defaults = new SoftMixer(new MixerConfig(16, 2), new SoftOptions());
        MixerAssert.PaddingNeverLeaks(defaults, new long[] { 55, 9 }, tol: 2e-4);
    }
}

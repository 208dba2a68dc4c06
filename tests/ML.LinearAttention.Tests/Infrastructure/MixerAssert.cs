using Microsoft.ML.LinearAttention.Attention;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>Module-level checks of token mixers: padding never leaks, true-length semantics, grid layout.</summary>
public static class MixerAssert
{
    /// <summary>
    /// Garbage in the padded tail must not change real outputs, padded outputs are zero, and (text only) each row
    /// equals the same row run alone without padding.
    /// </summary>
    public static void PaddingNeverLeaks(TokenMixer mixer, long[] lengths, bool compareTrimmed = true, double tol = 1e-4)
    {
        Torch.Seed(7);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        mixer.eval();
        long b = lengths.Length, t = lengths.Max(), c = mixer.Config.ModelDim;
        var mask = KernelAssert.LengthMask(lengths);
        var x = torch.randn(b, t, c);
        var y = mixer.forward(x, mask);
        var garbage = x + (mask.logical_not().unsqueeze(-1).to(ScalarType.Float32) * 50 * torch.randn(b, t, c));
        var y2 = mixer.forward(garbage, mask);
        var m3 = mask.unsqueeze(-1);
        KernelAssert.Close(y2, y, tol, tol, $"{mixer.GetName()}: padded garbage changed real outputs", m3);
        Assert.Equal(0.0, (y * m3.logical_not()).abs().sum().item<float>());
        if (!compareTrimmed) return;
        for (int i = 0; i < b; i++)
        {
            var alone = mixer.forward(x[i..(i + 1), ..(int)lengths[i], ..], null);
            KernelAssert.Close(y[i..(i + 1), ..(int)lengths[i], ..], alone, tol, tol, $"{mixer.GetName()}: row {i} differs from running it alone");
        }
    }

    /// <summary>Forward + backward in fp32 with the given grid; every parameter that should learn gets a gradient.</summary>
    public static void TrainsOnGrid(TokenMixer mixer, (int, int) grid, long t, long[] lengths)
    {
        Torch.Seed(11);
        mixer.Grid = grid;
        mixer.train();
        var mask = KernelAssert.LengthMask(lengths);
        var x = torch.randn(lengths.Length, t, mixer.Config.ModelDim);
        var y = mixer.forward(x, mask);
        Assert.False(y.isnan().any().item<bool>(), "NaN output on a grid");
        y.square().sum().backward();
        foreach (var (name, p) in mixer.named_parameters())
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{mixer.GetName()}: parameter {name} got no gradient on a grid");
        mixer.Grid = null;
    }
}

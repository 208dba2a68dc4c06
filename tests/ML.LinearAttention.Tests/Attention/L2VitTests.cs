using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.L2Vit;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>L²ViT reuses tested kernels (HiLo's window attention, the normalized linear kernel, LocalConv): module-level checks.</summary>
public class L2VitTests
{
    [Fact]
    public void LayersAlternateLocalAndGlobalUnlessTheRoleIsFixed()
    {
        var roles = Enumerable.Range(0, 4).Select(i => new L2VitMixer(new MixerConfig(16, 2, LayerIndex: i, NumLayers: 4), new L2VitOptions()).IsGlobal);
        Assert.Equal(new[] { false, true, false, true }, roles);
        Assert.True(new L2VitMixer(new MixerConfig(16, 2), new L2VitOptions { Role = L2VitRole.Global }).IsGlobal);
        // only the global layers own the local concentration convolutions
        Assert.DoesNotContain(new L2VitMixer(new MixerConfig(16, 2), new L2VitOptions()).named_parameters(), p => p.name.StartsWith("lcm"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new L2VitMixer(new MixerConfig(16, 2), new L2VitOptions { ConcentrationKernel = 4 }));
    }

    [Theory]
    [InlineData(L2VitRole.Local)]
    [InlineData(L2VitRole.Global)]
    public void MixerRespectsPaddingAndTrainsOnAGrid(L2VitRole role)
    {
        Torch.Seed();
        using var mixer = new L2VitMixer(new MixerConfig(16, 2), new L2VitOptions { Role = role, WindowSize = 2, ConcentrationKernel = 3 });
        MixerAssert.PaddingNeverLeaks(mixer, new long[] { 11, 5, 2 });
        MixerAssert.TrainsOnGrid(mixer, (3, 3), 10, new long[] { 10, 8 });
    }

    [Fact]
    public void LocalWindowsAreIndependentOfEachOther()
    {
        Torch.Seed();
        using var mixer = new L2VitMixer(new MixerConfig(8, 2), new L2VitOptions { Role = L2VitRole.Local, WindowSize = 2 });
        mixer.Grid = (4, 4);
        using var _ = no_grad();
        var x = torch.randn(1, 16, 8);
        var y = mixer.forward(x, null);
        var x2 = x.clone();
        x2[0, 15] = x2[0, 15] + 10;                                                        // a token of the last 2 × 2 window
        var y2 = mixer.forward(x2, null);
        var changed = (y2 - y).abs().sum(-1).squeeze(0) > 1e-6;
        Assert.Equal(new[] { 10L, 11, 14, 15 }, changed.nonzero().flatten().data<long>().ToArray());
    }
}

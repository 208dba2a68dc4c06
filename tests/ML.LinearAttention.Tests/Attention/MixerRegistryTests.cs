using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class MixerRegistryTests
{
    public static IEnumerable<object[]> Mechanisms() => MixerRegistry.All.Select(m => new object[] { m.Name });

    [Theory]
    [MemberData(nameof(Mechanisms))]
    public void EveryMechanismBuildsRunsAndTrainsInEachSupportedDirection(string name)
    {
        Torch.Seed();
        var info = MixerRegistry.Get(name);
        foreach (bool causal in new[] { false, true })
        {
            if (causal ? !info.SupportsCausal : !info.SupportsBidirectional) continue;
            using var mixer = MixerRegistry.Create(name, new MixerConfig(32, 4, causal, LayerIndex: 1, NumLayers: 4));
            var mask = KernelAssert.LengthMask(13, 7);
            var x = torch.randn(2, 13, 32);
            var y = mixer.forward(x, mask);
            Assert.Equal(x.shape, y.shape);
            Assert.False(y.isnan().any().item<bool>(), $"{name}: NaN output");
            Assert.Equal(0.0, y[1, 7.., ..].abs().sum().item<float>());
            y.square().sum().backward();
            var withGrad = mixer.parameters().Count(p => p.grad is not null && p.grad.abs().sum().item<float>() > 0);
            Assert.True(withGrad > 0, $"{name}: no parameter received a gradient");
        }
    }

    [Theory]
    [MemberData(nameof(Mechanisms))]
    public void EveryBenchmarkCaseRunsForwardAndBackwardOnCpu(string name)
    {
        Torch.Seed();
        var info = MixerRegistry.Get(name);
        if (info.BenchCases is null) return;
        var shape = new KernelBenchShape(2, 2, 70, 8, ScalarType.Float32, torch.CPU);
        foreach (var benchCase in info.BenchCases(shape))
        {
            using var scope = torch.NewDisposeScope();
            var inputs = benchCase.MakeInputs();
            var output = benchCase.Run(inputs);
            Assert.False(output.isnan().any().item<bool>(), $"{name}/{benchCase.Name}: NaN");
            output.sum().backward();
            Assert.Contains(inputs, i => i.requires_grad && i.grad is not null);
        }
    }

    [Fact]
    public void UnknownNameListsTheKnownOnes()
    {
        var ex = Assert.Throws<ArgumentException>(() => MixerRegistry.Create("softmaxx", new MixerConfig(8, 2)));
        Assert.Contains("Unknown attention mechanism 'softmaxx'", ex.Message);
        Assert.Contains("hedgehog", ex.Message);
    }

    [Fact]
    public void WrongOptionsTypeIsNamed()
    {
        var ex = Assert.Throws<ArgumentException>(() => MixerRegistry.Create("linear", new MixerConfig(8, 2), new HedgehogOptions()));
        Assert.Contains("LinearMixerOptions", ex.Message);
    }

    [Fact]
    public void OptionsRoundTripThroughJson()
    {
        var options = new LinearMixerOptions { FeatureMap = "relu", Normalize = false, ChunkSize = 32 };
        var json = MixerRegistry.SerializeOptions(options);
        Assert.Equal(options, MixerRegistry.DeserializeOptions("linear", json));
    }

    [Fact]
    public void HeadsMustDivideTheHiddenSize()
    {
        var ex = Assert.Throws<ArgumentException>(() => MixerRegistry.Create("softmax", new MixerConfig(30, 4)));
        Assert.Contains("not divisible", ex.Message);
    }
}

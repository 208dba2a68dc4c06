using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Agent;
using Microsoft.ML.LinearAttention.Attention.EfficientVit;
using Microsoft.ML.LinearAttention.Attention.Focused;
using Microsoft.ML.LinearAttention.Attention.InLine;
using Microsoft.ML.LinearAttention.Attention.Lina;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Attention.NaLaFormer;
using Microsoft.ML.LinearAttention.Attention.Rala;
using Microsoft.ML.LinearAttention.Attention.Soft;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>Registry-level behaviour of the norm-aware and vision-born mechanisms (group 3).</summary>
public class VisionMixersTests
{
    public static IEnumerable<object[]> Names() => new[] { "mala", "inline", "rala", "focused", "efficientvit", "nalaformer", "agent", "soft", "lina" }
        .Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Names))]
    public void RunsAndTrainsInBf16OnTextAndOnAGrid(string name)
    {
        Torch.Seed();
        using var mixer = MixerRegistry.Create(name, new MixerConfig(32, 4));
        mixer.to(ScalarType.BFloat16);
        var mask = KernelAssert.LengthMask(17, 9);
        foreach (var grid in new (int, int)?[] { null, (4, 4) })
        {
            mixer.Grid = grid;
            var x = torch.randn(2, 17, 32).to(ScalarType.BFloat16).requires_grad_(true);
            var y = mixer.forward(x, mask);
            Assert.Equal(ScalarType.BFloat16, y.dtype);
            Assert.False(y.isnan().any().item<bool>(), $"{name} grid={grid}: NaN output in bf16");
            y.to(ScalarType.Float32).square().sum().backward();
            Assert.False(x.grad!.isnan().any().item<bool>(), $"{name} grid={grid}: NaN gradient in bf16");
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void CausalIsRefusedAndBadInputIsNamed(string name)
    {
        var ex = Assert.Throws<ArgumentException>(() => MixerRegistry.Create(name, new MixerConfig(16, 2, Causal: true)));
        Assert.Contains("no causal form", ex.Message);
        using var mixer = MixerRegistry.Create(name, new MixerConfig(16, 2));
        var bad = Assert.Throws<ArgumentException>(() => mixer.forward(torch.zeros(1, 5, 12), null));
        Assert.Contains("[B, T, 16]", bad.Message);
        var badMask = Assert.Throws<ArgumentException>(() => mixer.forward(torch.zeros(1, 5, 16), torch.ones(1, 4, dtype: ScalarType.Bool)));
        Assert.Contains("[1, 5]", badMask.Message);
    }

    [Fact]
    public void NonDefaultOptionsRoundTripThroughJson()
    {
        var all = new (string Name, MixerOptions Options)[]
        {
            ("mala", new MalaOptions { Rope = false, LepeKernel = 3, OutputGate = false, Bias = false }),
            ("inline", new InLineOptions { FeatureMap = "relu", ResidualKernel = 5, QkvBias = false }),
            ("rala", new RalaOptions { Rope = false, LepeKernel = 0, OutputGate = false, QkvBias = false }),
            ("focused", new FocusedOptions { FocusingFactor = 2.5, DwcKernel = 3, QkvBias = true, PositionalEncodingLength = 196 }),
            ("efficientvit", new EfficientVitOptions { AggregationKernel = 3, Eps = 1e-4 }),
            ("nalaformer", new NaLaFormerOptions { Rope = false, LepeKernel = 7, OutputGate = false }),
            ("agent", new AgentOptions { NumAgents = 16, DwcKernel = 5, PositionBias = false, QkvBias = false }),
            ("soft", new SoftOptions { NumLandmarks = 64, NewtonIterations = 10, ConvKernel = 0 }),
            ("lina", new LinaOptions { KvGate = false, MaxLength = 1024, Rope = false, ConvKernel = 3 }),
        };
        foreach (var (name, options) in all)
            Assert.Equal(options, MixerRegistry.DeserializeOptions(name, MixerRegistry.SerializeOptions(options)));
    }
}

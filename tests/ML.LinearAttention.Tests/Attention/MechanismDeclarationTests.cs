using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// What every registered mechanism must declare besides its factory, so that adding one stays a folder plus one
/// registry line: its attention FLOPs (read by the benchmarks' MFU) and the projections LoRA adapts by default.
/// </summary>
public class MechanismDeclarationTests
{
    public static IEnumerable<object[]> Mechanisms() => MixerRegistry.All.Select(m => new object[] { m.Name });

    [Theory]
    [MemberData(nameof(Mechanisms))]
    public void EveryMechanismDeclaresItsAttentionFlops(string name)
    {
        var info = MixerRegistry.Get(name);
        Assert.True(info.AttentionFlops is not null, $"{name}: the registry line has no FLOP formula (pass flops: XBench.Flops).");
        foreach (int layer in new[] { 0, 1 })
        {
            var shape = new FlopShape(256, 4, 16, layer, 4);
            double defaults = info.AttentionFlops!(shape, null);
            Assert.True(double.IsFinite(defaults) && defaults >= 0, $"{name}: {defaults} FLOPs per token");
            Assert.Equal(defaults, info.AttentionFlops(shape, MixerRegistry.DefaultOptions(name)));   // null = the defaults
        }
    }

    [Theory]
    [MemberData(nameof(Mechanisms))]
    public void EveryMechanismWithProjectionsDeclaresLoraTargetsThatLoraWraps(string name)
    {
        Torch.Seed();
        var info = MixerRegistry.Get(name);
        using var mixer = MixerRegistry.Create(name, new MixerConfig(32, 4, Causal: !info.SupportsBidirectional, LayerIndex: 1, NumLayers: 4));
        mixer.eval();
        var linears = mixer.named_modules().Where(m => m.name.Length > 0 && m.module is Linear).Select(m => m.name).ToList();
        var targets = mixer.LoraTargets;
        if (linears.Count == 0)
        {
            Assert.Empty(targets);
            return;
        }
        Assert.True(targets.Count > 0, $"{name} has linear layers ({string.Join(", ", linears)}) but declares no LoRA targets.");
        foreach (var target in targets)
        {
            Assert.Contains(target, linears);
            Assert.True(ModuleSurgery.CanReplace(mixer, target, typeof(LoraLinear)), $"{name}.{target} is held in a field typed Linear: declare it as nn.Module<Tensor, Tensor>.");
        }

        var x = torch.randn(2, 13, 32);
        var mask = KernelAssert.LengthMask(13, 7);
        using var _ = torch.no_grad();
        var before = mixer.forward(x, mask);
        var applied = LoraLayers.Apply(mixer, new LoraOptions());
        Assert.Equal(targets.OrderBy(t => t, StringComparer.Ordinal), applied.Wrapped.OrderBy(t => t, StringComparer.Ordinal));
        Assert.Empty(applied.NotAdaptable);
        KernelAssert.Close(mixer.forward(x, mask), before, 1e-5, 1e-5, $"{name}: a fresh adapter (B = 0) changed the output");
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>Module-level checks shared by the decay/gate mixers (retnet, simple_gla, gla, lightning, mlstm).</summary>
internal static class DecayMixerAssert
{
    /// <summary>
    /// Causal: the output before position 9 ignores tokens from 9 on. Bidirectional: it does not, and garbage in a
    /// padded tail changes no real output (the row equals its trimmed self).
    /// </summary>
    internal static void CausalityAndPadding(string name, MixerOptions? options = null, int dim = 32, int heads = 4)
    {
        Torch.Seed();
        foreach (bool causal in new[] { true, false })
        {
            using var mixer = MixerRegistry.Create(name, new MixerConfig(dim, heads, causal, LayerIndex: 1, NumLayers: 3), options);
            using var scope = NewDisposeScope();
            var x = torch.randn(1, 21, dim);
            var changed = x.clone();
            changed[.., 9.., ..] = torch.randn(1, 12, dim) * 5;
            var y = mixer.forward(x, null);
            var y2 = mixer.forward(changed, null);
            double before = (y[.., ..9, ..] - y2[.., ..9, ..]).abs().max().item<float>();
            if (causal) Assert.True(before < 1e-5, $"{name}: causal output before position 9 changed by {before}");
            else Assert.True(before > 1e-4, $"{name}: bidirectional output does not see later tokens");

            var mask = KernelAssert.LengthMask(21, 13);
            var batch = torch.cat(new[] { x, changed }, 0);
            var padded = mixer.forward(batch, mask);
            var trimmed = mixer.forward(changed[.., ..13, ..], null);
            KernelAssert.Close(padded[1, ..13, ..].unsqueeze(0), trimmed, 1e-5, 1e-4, $"{name} causal={causal}: padded row equals its trimmed row");
            KernelAssert.Close(padded[0].unsqueeze(0), y, 1e-5, 1e-4, $"{name} causal={causal}: full row unchanged by a padded neighbour");
            Assert.Equal(0.0, padded[1, 13.., ..].abs().sum().item<float>());
        }
    }
}

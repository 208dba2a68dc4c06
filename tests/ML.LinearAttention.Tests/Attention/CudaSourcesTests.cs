using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The embedded CUDA sources against their manifest (kernels.json): NVRTC resolves a module's #include lines only from
/// the headers it is given, so every header a module reaches must be listed for it, and every embedded file must
/// belong to some module (tests/FusedKernelEmulator/run.sh compiles exactly the manifest's files).
/// </summary>
public class CudaSourcesTests
{
    private static IEnumerable<string> Includes(string text)
        => Regex.Matches(text, @"^\s*#\s*include\s+""([^""]+)""", RegexOptions.Multiline).Select(m => m.Groups[1].Value);

    [Fact]
    public void EachModuleListsExactlyTheHeadersItsSourceReaches()
    {
        Assert.Equal(new[] { CudaSources.LinearAttention, CudaSources.CausalLinearAttention, CudaSources.HedgehogMap,
            CudaSources.HedgehogProjection, CudaSources.HedgehogAttention, CudaSources.DecayLinearAttention, CudaSources.MultiTensorAdamW, CudaSources.RmsNorm, CudaSources.Rotary, CudaSources.DeltaRuleState }.Order(), CudaSources.All.Keys.Order());
        foreach (var module in CudaSources.All.Values)
        {
            var reached = new SortedSet<string>(StringComparer.Ordinal);
            var pending = new Stack<string>(Includes(module.Source));
            while (pending.TryPop(out var header))
                if (reached.Add(header))
                    foreach (var next in Includes(CudaSources.Read(header))) pending.Push(next);
            Assert.Equal(reached, new SortedSet<string>(module.Headers.Select(h => h.Name), StringComparer.Ordinal));
            Assert.All(module.Headers, h => Assert.Contains("#ifndef LA_", h.Text));   // include guards: a header may be reached twice
        }
    }

    [Fact]
    public void EveryEmbeddedCudaFileBelongsToAModule()
    {
        var named = CudaSources.All.Values.SelectMany(m => m.Headers.Select(h => h.Name).Append(m.SourceName)).ToHashSet();
        var embedded = CudaSources.EmbeddedFiles().ToList();
        Assert.Equal(21, embedded.Count);
        Assert.All(embedded, f => Assert.Contains(f, named));
        Assert.Equal(new[] { "HH=1" }, CudaSources.Module(CudaSources.HedgehogAttention).Defines);
        Assert.Empty(CudaSources.Module(CudaSources.LinearAttention).Defines);
        var e = Assert.Throws<ArgumentException>(() => CudaSources.Module("nope"));
        Assert.Contains("linear_attention", e.Message);
    }

    [Fact]
    public void TheKernelsEachModuleLaunchesAreInItsSources()
    {
        static string Text(CudaModuleSource m) => m.Source + string.Concat(m.Headers.Select(h => h.Text));
        var expected = new Dictionary<string, string[]>
        {
            [CudaSources.LinearAttention] = ["fwd_state", "fwd_out", "bwd_q", "bwd_kv", "mma_fwd_state", "mma_fwd_out", "mma_bwd_q", "mma_bwd_kv"],
            [CudaSources.CausalLinearAttention] = ["causal_state", "causal_scan", "causal_out", "causal_bwd_state", "causal_bwd"],
            [CudaSources.HedgehogMap] = ["hedgehog_map_fwd", "hedgehog_map_bwd", "hedgehog_map_fwd_vec", "hedgehog_map_bwd_vec"],
            [CudaSources.HedgehogProjection] = ["hedgehog_proj_fwd", "hedgehog_proj_bwd", "hedgehog_dw_bwd"],
            [CudaSources.HedgehogAttention] = ["mma_fwd_state", "mma_fwd_out", "mma_fwd_head", "mma_bwd_q", "mma_bwd_kv", "hedgehog_dw_bwd"],
            [CudaSources.DecayLinearAttention] = ["decay_state", "decay_scan", "decay_out", "decay_bwd_state", "decay_bwd"],
            [CudaSources.MultiTensorAdamW] = ["mt_grad_sumsq", "mt_grad_sumsq_finish", "mt_adamw"],
            [CudaSources.RmsNorm] = ["rms_norm_fwd", "rms_norm_bwd_dx", "rms_norm_bwd_dw_partial", "rms_norm_bwd_dw_finish"],
            [CudaSources.Rotary] = ["rotary_half_split"],
            [CudaSources.DeltaRuleState] = ["delta_state_scan"],
        };
        foreach (var (name, kernels) in expected)
        {
            var text = Text(CudaSources.Module(name));
            Assert.All(kernels, k => Assert.Matches(@"extern ""C"" \w+ void [^\n]*\b" + k + @"\(", text));
        }
    }
}

using Microsoft.ML.LinearAttention.Attention.Agent;
using Microsoft.ML.LinearAttention.Attention.EfficientVit;
using Microsoft.ML.LinearAttention.Attention.Focused;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.InLine;
using Microsoft.ML.LinearAttention.Attention.Lina;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Attention.NaLaFormer;
using Microsoft.ML.LinearAttention.Attention.Rala;
using Microsoft.ML.LinearAttention.Attention.Soft;
using Microsoft.ML.LinearAttention.Attention.Softmax;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>The built-in mechanisms: adding one is a folder under Attention/ and one line here.</summary>
internal static class BuiltInMixers
{
    internal static void RegisterAll()
    {
        MixerRegistry.Register<SoftmaxOptions>("softmax", "Softmax attention through scaled_dot_product_attention (flash on GPU); Window > 0 gives sliding-window attention.", true, true, (c, o) => new SoftmaxMixer(c, o), SoftmaxBench.Cases);
        MixerRegistry.Register<LinearAttentionOptions>("linear", "Linear attention with a fixed feature map (elu+1, relu, identity), normalized or TransNormer-style.", true, true, (c, o) => new LinearMixer(c, o), LinearBench.Cases);
        MixerRegistry.Register<HedgehogOptions>("hedgehog", "Hedgehog: learnable softmax-mimicking feature maps [softmax(xW), softmax(-xW)].", true, true, (c, o) => new HedgehogMixer(c, o), HedgehogBench.Cases);
        MixerRegistry.Register<MalaOptions>("mala", "MALA: magnitude-aware linear attention (elu+1, scaling-and-offset weights that keep the query norm) with RoPE, LePE and an output gate.", true, false, (c, o) => new MalaMixer(c, o), MalaBench.Cases);
        MixerRegistry.Register<InLineOptions>("inline", "InLine: injective linear attention (rows sum to one by subtraction) plus a per-sample predicted local residual on v.", true, false, (c, o) => new InLineMixer(c, o), InLineBench.Cases);
        MixerRegistry.Register<RalaOptions>("rala", "RALA: rank-augmented linear attention (query-guided softmax reweighting of keys, elu+1, RoPE numerator) with LePE and an output gate.", true, false, (c, o) => new RalaMixer(c, o), RalaBench.Cases);
        MixerRegistry.Register<FocusedOptions>("focused", "Focused linear attention (FLatten): norm-preserving power-sharpened ReLU map with a learned scale, plus a depthwise conv on v.", true, false, (c, o) => new FocusedMixer(c, o), FocusedBench.Cases);
        MixerRegistry.Register<EfficientVitOptions>("efficientvit", "EfficientViT LiteMLA: ReLU linear attention in fp32 with multi-scale (depthwise-aggregated) extra heads.", true, false, (c, o) => new EfficientVitMixer(c, o), EfficientVitBench.Cases);
        MixerRegistry.Register<NaLaFormerOptions>("nalaformer", "NaLaFormer: norm-aware linear attention (query-norm-driven power map, sign-split directions, RoPE numerator) with LePE and a SiLU gate.", true, false, (c, o) => new NaLaFormerMixer(c, o), NaLaFormerBench.Cases);
        MixerRegistry.Register<AgentOptions>("agent", "Agent attention: 49 agents pooled from the queries of real tokens gather from keys and broadcast to queries (two softmaxes, O(T·n)), plus a depthwise conv on v.", true, false, (c, o) => new AgentMixer(c, o), AgentBench.Cases);
        MixerRegistry.Register<SoftOptions>("soft", "SOFT: softmax-free Gaussian-kernel attention (tied q = k) through 49 landmarks pooled from real tokens, Nyström with a Newton–Schulz pseudo-inverse.", true, false, (c, o) => new SoftMixer(c, o), SoftBench.Cases);
        MixerRegistry.Register<LinaOptions>("lina", "LINA: division-normalized ReLU linear attention (fp32, RoPE) with a learned per-position KV gate and a depthwise conv on the input.", true, false, (c, o) => new LinaMixer(c, o), LinaBench.Cases);
    }
}

using Microsoft.ML.LinearAttention.Attention.Based;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Liger;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using Microsoft.ML.LinearAttention.Attention.Lolcats;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
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
        MixerRegistry.Register<TaylorOptions>("taylor", "Taylor linear attention (BASED's linear layer): second-order Taylor map of exp on q/k projected to FeatureDim per head.", true, true, (c, o) => new BasedMixer(c, o), BasedBench.TaylorCases);
        MixerRegistry.Register<BasedOptions>("based", "BASED: Taylor linear attention plus sliding-window softmax in one layer (branches summed).", true, true, (c, o) => new BasedMixer(c, o), BasedBench.Cases);
        MixerRegistry.Register<LolcatsOptions>("lolcats", "LoLCATs window attention: sliding-window softmax plus Hedgehog linear attention outside the window, one normalizer, per-head window factors.", true, true, (c, o) => new LolcatsMixer(c, o), LolcatsBench.Cases);
        MixerRegistry.Register<LigerOptions>("liger", "Liger Attention: 0.5 sliding-window softmax (RoPE) + 0.5 GLA with softmax feature maps and gates logsigmoid(k)/16, no new parameters.", true, true, (c, o) => new LigerMixer(c, o), LigerBench.Cases);
        MixerRegistry.Register<SlidingWindowOptions>("swa", "Sliding-window softmax attention, banded (no [T, T] mask): bidirectional |i-j| <= Window, causal the last Window keys.", true, true, (c, o) => new SlidingWindowMixer(c, o), SlidingWindowBench.Cases);
    }
}

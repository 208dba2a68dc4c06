using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Kda;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using Microsoft.ML.LinearAttention.Attention.MoM;
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
        MixerRegistry.Register<DeltaNetOptions>("deltanet", "DeltaNet: the delta rule S = (I − βkkᵀ)S + βkvᵀ with L2-normalised q/k, short convolutions and RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new DeltaNetMixer(c, o), DeltaNetBench.Cases);
        MixerRegistry.Register<GatedDeltaNetOptions>("gated_deltanet", "Gated DeltaNet: the delta rule with a Mamba2-style scalar decay per head, short convolutions and gated RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new GatedDeltaNetMixer(c, o), GatedDeltaNetBench.Cases);
        MixerRegistry.Register<KdaOptions>("kda", "Kimi Delta Attention: the delta rule with a per-channel decay from a low-rank gate, short convolutions and sigmoid-gated RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new KdaMixer(c, o), KdaBench.Cases);
        MixerRegistry.Register<MomOptions>("mom", "Mixture-of-Memories: a top-k router over several Gated DeltaNet memories; tokens write to and read from only their routed memories; two-scan encoder.", true, true, (c, o) => new MomMixer(c, o), MomBench.Cases);
    }
}

using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using Microsoft.ML.LinearAttention.Attention.Performer;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Attention.Sqa;
using Microsoft.ML.LinearAttention.Attention.TransNormer;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>The built-in mechanisms: adding one is a folder under Attention/ and one line here.</summary>
internal static class BuiltInMixers
{
    internal static void RegisterAll()
    {
        MixerRegistry.Register<SoftmaxOptions>("softmax", "Softmax attention through scaled_dot_product_attention (flash on GPU); Window > 0 gives sliding-window attention.", true, true, (c, o) => new SoftmaxMixer(c, o), SoftmaxBench.Cases);
        MixerRegistry.Register<LinearAttentionOptions>("linear", "Linear attention with a fixed or small learned feature map (elu+1, relu, identity, dpfp, t2r, elementwise_product), normalized or TransNormer-style.", true, true, (c, o) => new LinearMixer(c, o), LinearBench.Cases);
        MixerRegistry.Register<HedgehogOptions>("hedgehog", "Hedgehog: learnable softmax-mimicking feature maps [softmax(xW), softmax(-xW)].", true, true, (c, o) => new HedgehogMixer(c, o), HedgehogBench.Cases);
        MixerRegistry.Register<SqaOptions>("sqa", "Sparse Query Attention: softmax (SDPA) with fewer query heads (H/2) over fewer key/value heads (H/4).", true, true, (c, o) => new SqaMixer(c, o), SqaBench.Cases);
        MixerRegistry.Register<PerformerOptions>("performer", "Performer FAVOR+: positive orthogonal random features approximating softmax, normalized linear kernel.", true, true, (c, o) => new PerformerMixer(c, o), PerformerBench.Cases);
        MixerRegistry.Register<TransNormerOptions>("transnormer", "TransNormer NormAttention: 1+elu linear attention without denominator, SRMSNorm on the output.", true, true, (c, o) => new TransNormerMixer(c, o), TransNormerBench.Cases);
    }
}

using Microsoft.ML.LinearAttention.Attention.Gla;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Lightning;
using Microsoft.ML.LinearAttention.Attention.LinearKernel;
using Microsoft.ML.LinearAttention.Attention.Performer;
using Microsoft.ML.LinearAttention.Attention.Mlstm;
using Microsoft.ML.LinearAttention.Attention.RetNet;
using Microsoft.ML.LinearAttention.Attention.SimpleGla;
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
        MixerRegistry.Register<RetNetOptions>("retnet", "RetNet multi-scale retention: fixed per-head decay 1 − 2^(−5−h), rotary, RMSNorm + swish output gate; bidirectional = forward + reversed scans.", true, true, (c, o) => new RetNetMixer(c, o), RetNetBench.Cases);
        MixerRegistry.Register<SimpleGlaOptions>("simple_gla", "Simple GLA: one data-dependent decay per head and step (logsigmoid/16), short convs, RMSNorm + swish output gate; bidirectional = two scans with their own gates.", true, true, (c, o) => new SimpleGlaMixer(c, o), SimpleGlaBench.Cases);
        MixerRegistry.Register<GlaOptions>("gla", "Gated linear attention: per-channel data-dependent decays from a low-rank gate (logsigmoid/16), RMSNorm + swish output gate; bidirectional = two scans with their own gates (ViG).", true, true, (c, o) => new GlaMixer(c, o), GlaBench.Cases);
        MixerRegistry.Register<LightningOptions>("lightning", "Lightning attention (TransNormerLLM): SiLU q/k/v, ALiBi-slope decay weakening with depth, LayerNorm + sigmoid low-rank output gate; bidirectional = symmetric decay exp(−s|t−s|).", true, true, (c, o) => new LightningMixer(c, o), LightningBench.Cases);
        MixerRegistry.Register<MlstmOptions>("mlstm", "mLSTM (xLSTM/TFLA): exponential input gate, sigmoid or exponential forget gate, normaliser and max-state stabilisation; bidirectional = one LION matrix from two scans with their own forget gates.", true, true, (c, o) => new MlstmMixer(c, o), MlstmBench.Cases);
    }
}

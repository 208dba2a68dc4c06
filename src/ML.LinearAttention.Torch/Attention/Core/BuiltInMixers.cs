using Microsoft.ML.LinearAttention.Attention.Agent;
using Microsoft.ML.LinearAttention.Attention.Based;
using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.EfficientVit;
using Microsoft.ML.LinearAttention.Attention.Focused;
using Microsoft.ML.LinearAttention.Attention.GatedDeltaNet;
using Microsoft.ML.LinearAttention.Attention.Gla;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.HiLo;
using Microsoft.ML.LinearAttention.Attention.InLine;
using Microsoft.ML.LinearAttention.Attention.Kda;
using Microsoft.ML.LinearAttention.Attention.L2Vit;
using Microsoft.ML.LinearAttention.Attention.Liger;
using Microsoft.ML.LinearAttention.Attention.Lightning;
using Microsoft.ML.LinearAttention.Attention.Lina;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Attention.Lolcats;
using Microsoft.ML.LinearAttention.Attention.Mala;
using Microsoft.ML.LinearAttention.Attention.Mlstm;
using Microsoft.ML.LinearAttention.Attention.MoM;
using Microsoft.ML.LinearAttention.Attention.NaLaFormer;
using Microsoft.ML.LinearAttention.Attention.Performer;
using Microsoft.ML.LinearAttention.Attention.Rala;
using Microsoft.ML.LinearAttention.Attention.RetNet;
using Microsoft.ML.LinearAttention.Attention.SimpleGla;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Soft;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Attention.Sqa;
using Microsoft.ML.LinearAttention.Attention.TransNormer;
using Microsoft.ML.LinearAttention.Attention.Van;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// The built-in mechanisms: adding one is a folder under Attention/ and one line here (name, description, directions,
/// factory, kernel benchmark cases, attention FLOPs); docs/adding-a-mechanism.md walks through it.
/// </summary>
internal static class BuiltInMixers
{
    internal static void RegisterAll()
    {
        MixerRegistry.Register<SoftmaxOptions>("softmax", "Softmax attention through scaled_dot_product_attention (flash on GPU); Window > 0 gives sliding-window attention.", true, true, (c, o) => new SoftmaxMixer(c, o), SoftmaxBench.Cases, SoftmaxBench.Flops);
        MixerRegistry.Register<LinearMixerOptions>("linear", "Linear attention with a fixed or small learned feature map (elu+1, relu, identity, dpfp, t2r, elementwise_product), normalized or TransNormer-style.", true, true, (c, o) => new LinearMixer(c, o), LinearBench.Cases, LinearBench.Flops);
        MixerRegistry.Register<HedgehogOptions>("hedgehog", "Hedgehog: learnable softmax-mimicking feature maps [softmax(xW), softmax(-xW)].", true, true, (c, o) => new HedgehogMixer(c, o), HedgehogBench.Cases, HedgehogBench.Flops);
        MixerRegistry.Register<SqaOptions>("sqa", "Sparse Query Attention: softmax (SDPA) with fewer query heads (H/2) over fewer key/value heads (H/4).", true, true, (c, o) => new SqaMixer(c, o), SqaBench.Cases, SqaBench.Flops);
        MixerRegistry.Register<PerformerOptions>("performer", "Performer FAVOR+: positive orthogonal random features approximating softmax, normalized linear kernel.", true, true, (c, o) => new PerformerMixer(c, o), PerformerBench.Cases, PerformerBench.Flops);
        MixerRegistry.Register<TransNormerOptions>("transnormer", "TransNormer NormAttention: 1+elu linear attention without denominator, SRMSNorm on the output.", true, true, (c, o) => new TransNormerMixer(c, o), TransNormerBench.Cases, TransNormerBench.Flops);
        MixerRegistry.Register<RetNetOptions>("retnet", "RetNet multi-scale retention: fixed per-head decay 1 − 2^(−5−h), rotary, RMSNorm + swish output gate; bidirectional = forward + reversed scans.", true, true, (c, o) => new RetNetMixer(c, o), RetNetBench.Cases, RetNetBench.Flops);
        MixerRegistry.Register<SimpleGlaOptions>("simple_gla", "Simple GLA: one data-dependent decay per head and step (logsigmoid/16), short convs, RMSNorm + swish output gate; bidirectional = two scans with their own gates.", true, true, (c, o) => new SimpleGlaMixer(c, o), SimpleGlaBench.Cases, SimpleGlaBench.Flops);
        MixerRegistry.Register<GlaOptions>("gla", "Gated linear attention: per-channel data-dependent decays from a low-rank gate (logsigmoid/16), RMSNorm + swish output gate; bidirectional = two scans with their own gates (ViG).", true, true, (c, o) => new GlaMixer(c, o), GlaBench.Cases, GlaBench.Flops);
        MixerRegistry.Register<LightningOptions>("lightning", "Lightning attention (TransNormerLLM): SiLU q/k/v, ALiBi-slope decay weakening with depth, LayerNorm + sigmoid low-rank output gate; bidirectional = symmetric decay exp(−s|t−s|).", true, true, (c, o) => new LightningMixer(c, o), LightningBench.Cases, LightningBench.Flops);
        MixerRegistry.Register<MlstmOptions>("mlstm", "mLSTM (xLSTM/TFLA): exponential input gate, sigmoid or exponential forget gate, normaliser and max-state stabilisation; bidirectional = one LION matrix from two scans with their own forget gates.", true, true, (c, o) => new MlstmMixer(c, o), MlstmBench.Cases, MlstmBench.Flops);
        MixerRegistry.Register<MalaOptions>("mala", "MALA: magnitude-aware linear attention (elu+1, scaling-and-offset weights that keep the query norm) with RoPE, LePE and an output gate.", true, false, (c, o) => new MalaMixer(c, o), MalaBench.Cases, MalaBench.Flops);
        MixerRegistry.Register<InLineOptions>("inline", "InLine: injective linear attention (rows sum to one by subtraction) plus a per-sample predicted local residual on v.", true, false, (c, o) => new InLineMixer(c, o), InLineBench.Cases, InLineBench.Flops);
        MixerRegistry.Register<RalaOptions>("rala", "RALA: rank-augmented linear attention (query-guided softmax reweighting of keys, elu+1, RoPE numerator) with LePE and an output gate.", true, false, (c, o) => new RalaMixer(c, o), RalaBench.Cases, RalaBench.Flops);
        MixerRegistry.Register<FocusedOptions>("focused", "Focused linear attention (FLatten): norm-preserving power-sharpened ReLU map with a learned scale, plus a depthwise conv on v.", true, false, (c, o) => new FocusedMixer(c, o), FocusedBench.Cases, FocusedBench.Flops);
        MixerRegistry.Register<EfficientVitOptions>("efficientvit", "EfficientViT LiteMLA: ReLU linear attention in fp32 with multi-scale (depthwise-aggregated) extra heads.", true, false, (c, o) => new EfficientVitMixer(c, o), EfficientVitBench.Cases, EfficientVitBench.Flops);
        MixerRegistry.Register<NaLaFormerOptions>("nalaformer", "NaLaFormer: norm-aware linear attention (query-norm-driven power map, sign-split directions, RoPE numerator) with LePE and a SiLU gate.", true, false, (c, o) => new NaLaFormerMixer(c, o), NaLaFormerBench.Cases, NaLaFormerBench.Flops);
        MixerRegistry.Register<AgentOptions>("agent", "Agent attention: 49 agents pooled from the queries of real tokens gather from keys and broadcast to queries (two softmaxes, O(T·n)), plus a depthwise conv on v.", true, false, (c, o) => new AgentMixer(c, o), AgentBench.Cases, AgentBench.Flops);
        MixerRegistry.Register<SoftOptions>("soft", "SOFT: softmax-free Gaussian-kernel attention (tied q = k) through 49 landmarks pooled from real tokens, Nyström with a Newton–Schulz pseudo-inverse.", true, false, (c, o) => new SoftMixer(c, o), SoftBench.Cases, SoftBench.Flops);
        MixerRegistry.Register<LinaOptions>("lina", "LINA: division-normalized ReLU linear attention (fp32, RoPE) with a learned per-position KV gate and a depthwise conv on the input.", true, false, (c, o) => new LinaMixer(c, o), LinaBench.Cases, LinaBench.Flops);
        MixerRegistry.Register<TaylorOptions>("taylor", "Taylor linear attention (BASED's linear layer): second-order Taylor map of exp on q/k projected to FeatureDim per head.", true, true, (c, o) => new BasedMixer(c, o), BasedBench.TaylorCases, BasedBench.TaylorFlops);
        MixerRegistry.Register<BasedOptions>("based", "BASED: Taylor linear attention plus sliding-window softmax in one layer (branches summed).", true, true, (c, o) => new BasedMixer(c, o), BasedBench.Cases, BasedBench.Flops);
        MixerRegistry.Register<LolcatsOptions>("lolcats", "LoLCATs window attention: sliding-window softmax plus Hedgehog linear attention outside the window, one normalizer, per-head window factors.", true, true, (c, o) => new LolcatsMixer(c, o), LolcatsBench.Cases, LolcatsBench.Flops);
        MixerRegistry.Register<LigerOptions>("liger", "Liger Attention: 0.5 sliding-window softmax (RoPE) + 0.5 GLA with softmax feature maps and gates logsigmoid(k)/16, no new parameters.", true, true, (c, o) => new LigerMixer(c, o), LigerBench.Cases, LigerBench.Flops);
        MixerRegistry.Register<SlidingWindowOptions>("swa", "Sliding-window softmax attention, banded (no [T, T] mask): bidirectional |i-j| <= Window, causal the last Window keys.", true, true, (c, o) => new SlidingWindowMixer(c, o), SlidingWindowBench.Cases, SlidingWindowBench.Flops);
        MixerRegistry.Register<DeltaNetOptions>("deltanet", "DeltaNet: the delta rule S = (I − βkkᵀ)S + βkvᵀ with L2-normalised q/k, short convolutions and RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new DeltaNetMixer(c, o), DeltaNetBench.Cases, DeltaNetBench.Flops);
        MixerRegistry.Register<GatedDeltaNetOptions>("gated_deltanet", "Gated DeltaNet: the delta rule with a Mamba2-style scalar decay per head, short convolutions and gated RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new GatedDeltaNetMixer(c, o), GatedDeltaNetBench.Cases, GatedDeltaNetBench.Flops);
        MixerRegistry.Register<KdaOptions>("kda", "Kimi Delta Attention: the delta rule with a per-channel decay from a low-rank gate, short convolutions and sigmoid-gated RMSNorm; chunkwise WY form, two-scan encoder.", true, true, (c, o) => new KdaMixer(c, o), KdaBench.Cases, KdaBench.Flops);
        MixerRegistry.Register<MomOptions>("mom", "Mixture-of-Memories: a top-k router over several Gated DeltaNet memories; tokens write to and read from only their routed memories; two-scan encoder.", true, true, (c, o) => new MomMixer(c, o), MomBench.Cases, MomBench.Flops);
        MixerRegistry.Register<HiLoOptions>("hilo", "HiLo (LITv2): most heads attend to s×s-pooled window means (Lo-Fi, global), the rest inside s×s windows (Hi-Fi, local); softmax, T·s² + T²/s².", true, false, (c, o) => new HiLoMixer(c, o), HiLoBench.Cases, HiLoBench.Flops);
        MixerRegistry.Register<VanOptions>("van", "VAN large-kernel attention: a gate from depthwise 5×5 then 7×7 dilation-3 convolutions (a 21×21 kernel decomposed) times the input, between 1×1 projections; no token-token scores.", true, false, (c, o) => new VanMixer(c, o), VanBench.Cases, VanBench.Flops);
        MixerRegistry.Register<L2VitOptions>("l2vit", "L²ViT: local 7×7 window softmax attention and linear global ReLU attention with a depthwise local concentration module, alternating by layer (or fixed by Role).", true, false, (c, o) => new L2VitMixer(c, o), L2VitBench.Cases, L2VitBench.Flops);
    }
}

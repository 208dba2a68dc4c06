using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Liger;

/// <summary>Options of Liger Attention.</summary>
public sealed record LigerOptions : MixerOptions
{
    /// <summary>Sliding window of the softmax half (bidirectional: |i−j| ≤ Window; causal: the last Window keys).
    /// The paper describes sliding-window softmax; the stored code runs full causal softmax (<c>window_size=None</c>),
    /// which is Window = 0 here. Default 64 (library choice, LoLCATs' window: the paper's size was not verified).</summary>
    public int Window { get; init; } = 64;
    /// <summary>Rotary base for the softmax half's q/k (Liger keeps the base LLM's RoPE there, Llama: 10000); 0 = no RoPE
    /// (e.g. when the encoder adds absolute positions). The GLA half never uses RoPE.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>Divides logsigmoid(k) for the GLA log-decay (<c>gate_logit_normalizer = 16</c>).</summary>
    public double GateNormalizer { get; init; } = LigerKernels.GateNormalizer;
    /// <summary>Chunk length of the chunkwise GLA kernel.</summary>
    public int ChunkSize { get; init; } = Decay.DecayKernels.DefaultChunk;
}

/// <summary>
/// Liger Attention token mixer: q/k/v/o projections only (Liger adds no parameters: the GLA gate is built from k).
/// o = o_proj(0.5·softmax-window(RoPE q, RoPE k, v) + 0.5·GLA(softmax(q), softmax(k), v, logsigmoid(k)/16)).
/// Causal as in Liger; the bidirectional form (GLA forward + reverse scan, symmetric window) is a library extension
/// for encoders, as §1.0/§1.16 of the reference describe for gated recurrences.
/// </summary>
public sealed class LigerMixer : ProjectedMixer
{
    private readonly LigerOptions _options;

    public LigerMixer(MixerConfig config, LigerOptions options) : base(nameof(LigerMixer), config)
    {
        if (options.Window < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Window, "Liger Window must be 0 (full softmax) or positive.");
        if (options.RopeTheta < 0 || double.IsNaN(options.RopeTheta))
            throw new ArgumentOutOfRangeException(nameof(options), options.RopeTheta, "RopeTheta must be 0 (no RoPE) or positive (10000 in Llama).");
        if (options.RopeTheta > 0 && config.HeadDim % 2 != 0)
            throw new ArgumentException($"RoPE needs an even head dimension; got {config.HeadDim}. Set RopeTheta = 0 or change the head count.");
        if (!(options.GateNormalizer > 0))
            throw new ArgumentOutOfRangeException(nameof(options), options.GateNormalizer, "GateNormalizer must be positive (Liger: 16).");
        MixerChecks.ChunkSize(options.ChunkSize, "Liger");
        _options = options;
        RegisterComponents();
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        var fq = LigerKernels.FeatureMap(q);
        var fk = LigerKernels.FeatureMap(k);
        var gate = LigerKernels.Gate(k, _options.GateNormalizer);
        if (_options.RopeTheta > 0)
        {
            q = Rotary.Apply(q, _options.RopeTheta);
            k = Rotary.Apply(k, _options.RopeTheta);
        }
        var o = LigerKernels.Attention(q, k, fq, fk, gate, v, keyPaddingMask, _options.Window, Config.Causal, _options.ChunkSize);
        return o.MoveToOuterDisposeScope();
    }
}

using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Softmax;

/// <summary>Options of softmax attention.</summary>
public sealed record SoftmaxOptions : MixerOptions
{
    /// <summary>0 = full attention; otherwise a sliding window (symmetric band of ±Window for encoders, the last Window keys when causal).</summary>
    public int Window { get; init; }
}

/// <summary>Multi-head softmax attention through SDPA (the reference every linear mechanism is measured against).</summary>
public sealed class SoftmaxMixer : ProjectedMixer
{
    private readonly int _window;

    public SoftmaxMixer(MixerConfig config, SoftmaxOptions options) : base(nameof(SoftmaxMixer), config)
    {
        if (options.Window < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Window, "Window must be 0 (full attention) or positive.");
        _window = options.Window;
        RegisterComponents();
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
        => SoftmaxKernels.Attention(q, k, v, keyPaddingMask, Config.Causal, _window);
}

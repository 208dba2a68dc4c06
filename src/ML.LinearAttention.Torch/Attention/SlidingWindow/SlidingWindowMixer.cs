using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.SlidingWindow;

/// <summary>Options of sliding-window softmax attention ("swa").</summary>
public sealed record SlidingWindowOptions : MixerOptions
{
    /// <summary>Window: bidirectional, keys with |i−j| ≤ Window (2·Window + 1 keys); causal, the last Window keys.
    /// The reference names no encoder default (§1.22: BASED uses 256 causal, fla's hybrid configs 2048); 512 is the
    /// library's encoder default (one window covers a typical BERT-length input).</summary>
    public int Window { get; init; } = 512;
    /// <summary>Query block length of the banded kernel (capped at Window); 64 suits GPU tiles.</summary>
    public int BlockSize { get; init; } = SlidingWindowKernels.DefaultBlock;
}

/// <summary>
/// Sliding-window softmax attention through the banded kernel (<see cref="SlidingWindowKernels.Attention"/>): the same
/// function as "softmax" with a Window, but memory O(T·(Q + 2·Window)) instead of a [T, T] mask.
/// </summary>
public sealed class SlidingWindowMixer : ProjectedMixer
{
    private readonly int _window;
    private readonly int _block;

    public SlidingWindowMixer(MixerConfig config, SlidingWindowOptions options) : base(nameof(SlidingWindowMixer), config)
    {
        if (options.Window <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.Window, "Sliding-window attention needs Window ≥ 1 (512 is the default); use \"softmax\" for full attention.");
        if (options.BlockSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.BlockSize, "BlockSize must be positive (64 is the default).");
        _window = options.Window;
        _block = options.BlockSize;
        RegisterComponents();
    }

    protected override Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
        => SlidingWindowKernels.Attention(q, k, v, keyPaddingMask, _window, Config.Causal, _block);
}

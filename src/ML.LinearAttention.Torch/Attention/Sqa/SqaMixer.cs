using Microsoft.ML.LinearAttention.Attention.Softmax;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Sqa;

/// <summary>
/// Options of Sparse Query Attention (Filipek 2025, arXiv 2510.01817; RxLM's <c>SparseQueryAttention</c>). The head
/// dimension stays the model's D = C/H; only the number of query heads Hq and key/value heads Hkv shrink, so the
/// score FLOPs drop by H/Hq.
/// </summary>
public sealed record SqaOptions : MixerOptions
{
    /// <summary>
    /// Preset used for head counts left at 0: "sqa" (Hq = H/2, Hkv = H/4: the paper's standard SQA), "ssqa"
    /// (symmetric, Hq = Hkv = H/2) or "xsqa" (extreme, Hq = Hkv = H/4). Counts round down, to at least 1, and Hkv
    /// is lowered to a divisor of Hq when needed.
    /// </summary>
    public string Variant { get; init; } = "sqa";
    /// <summary>Query heads Hq (1..H); 0 = from <see cref="Variant"/>.</summary>
    public int QueryHeads { get; init; }
    /// <summary>Key/value heads Hkv (must divide Hq); 0 = from <see cref="Variant"/>.</summary>
    public int KeyValueHeads { get; init; }
    /// <summary>0 = full attention; otherwise a sliding window as in <see cref="SoftmaxOptions.Window"/> (the paper's SW-SQA).</summary>
    public int Window { get; init; }

    /// <summary>The (Hq, Hkv) these options give for <paramref name="numHeads"/> model heads; throws on bad values.</summary>
    public (int QueryHeads, int KeyValueHeads) Resolve(int numHeads)
    {
        var variant = (Variant ?? "").Trim().ToLowerInvariant();
        (int q, int kv) preset = variant switch
        {
            "sqa" => (numHeads / 2, numHeads / 4),
            "ssqa" => (numHeads / 2, numHeads / 2),
            "xsqa" => (numHeads / 4, numHeads / 4),
            _ => throw new ArgumentException($"Unknown SQA variant '{Variant}'. Known variants: sqa, ssqa, xsqa."),
        };
        int hq = QueryHeads != 0 ? QueryHeads : Math.Max(1, preset.q);
        if (hq < 1 || hq > numHeads)
            throw new ArgumentOutOfRangeException(nameof(QueryHeads), QueryHeads, $"QueryHeads must lie in 1..{numHeads} (the model's heads); 0 picks the {variant} default.");
        int hkv = KeyValueHeads;
        if (hkv == 0)
        {
            hkv = Math.Clamp(preset.kv, 1, hq);
            while (hq % hkv != 0) hkv--; // the largest divisor of Hq not above the preset
        }
        if (hkv < 1 || hkv > numHeads)
            throw new ArgumentOutOfRangeException(nameof(KeyValueHeads), KeyValueHeads, $"KeyValueHeads must lie in 1..{numHeads}; 0 picks the {variant} default.");
        if (hq % hkv != 0)
            throw new ArgumentException($"QueryHeads ({hq}) must be a multiple of KeyValueHeads ({hkv}): each key/value head serves Hq/Hkv query heads. Choose a KeyValueHeads that divides {hq}.");
        if (Window < 0) throw new ArgumentOutOfRangeException(nameof(Window), Window, "Window must be 0 (full attention) or positive.");
        return (hq, hkv);
    }
}

/// <summary>
/// Sparse Query Attention: q projected to Hq heads, k/v to Hkv heads (head dimension D = C/H), softmax attention
/// through <see cref="SoftmaxKernels.Attention"/> (SDPA with grouped key/value heads), output projection Hq·D → C.
/// No biases (RxLM's default <c>use_bias=False</c>).
/// </summary>
public sealed class SqaMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> q_proj;
    private readonly nn.Module<Tensor, Tensor> k_proj;
    private readonly nn.Module<Tensor, Tensor> v_proj;
    private readonly nn.Module<Tensor, Tensor> o_proj;
    private readonly int _window;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "q_proj", "k_proj", "v_proj", "o_proj" };

    public SqaMixer(MixerConfig config, SqaOptions options) : base(nameof(SqaMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        (QueryHeads, KeyValueHeads) = options.Resolve(config.NumHeads);
        _window = options.Window;
        int c = config.ModelDim, d = config.HeadDim;
        q_proj = nn.Linear(c, QueryHeads * d, hasBias: false);
        k_proj = nn.Linear(c, KeyValueHeads * d, hasBias: false);
        v_proj = nn.Linear(c, KeyValueHeads * d, hasBias: false);
        o_proj = nn.Linear(QueryHeads * d, c, hasBias: false);
        RegisterComponents();
    }

    /// <summary>Number of query heads Hq.</summary>
    public int QueryHeads { get; }
    /// <summary>Number of key/value heads Hkv.</summary>
    public int KeyValueHeads { get; }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        var q = Heads.Split(q_proj.forward(x), QueryHeads);
        var k = Heads.Split(k_proj.forward(x), KeyValueHeads);
        var v = Heads.Split(v_proj.forward(x), KeyValueHeads);
        var o = Heads.Merge(SoftmaxKernels.Attention(q, k, v, keyPaddingMask, Config.Causal, _window));
        return Heads.ZeroPadded(o_proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

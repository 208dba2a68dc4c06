using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mlstm;

/// <summary>Options of the mLSTM layer; defaults are fla's <c>MLSTM</c> layer (adapted from xLSTM's mLSTM block).</summary>
public sealed record MlstmOptions : MixerOptions
{
    /// <summary>Inner width = hidden size × ProjFactor, rounded up to a multiple of <see cref="RoundUpTo"/> (fla: 2.0).</summary>
    public double ProjFactor { get; init; } = 2.0;
    /// <summary>The inner width is rounded up to a multiple of this (fla: 64). Use 1 for no rounding.</summary>
    public int RoundUpTo { get; init; } = 64;
    /// <summary>Block size of the block-diagonal q/k/v projections (fla's <c>qkv_proj_blocksize</c>: 4).</summary>
    public int QkvBlockSize { get; init; } = 4;
    /// <summary>Causal short convolution size before q and k (fla: 4).</summary>
    public int ConvSize { get; init; } = 4;
    /// <summary>Bias in the short convolution (fla: true).</summary>
    public bool ConvBias { get; init; } = true;
    /// <summary>Bias in the up, down and q/k/v projections (fla: false; the gates always have one).</summary>
    public bool Bias { get; init; }
    /// <summary>Forget-gate activation (xLSTM/fla: sigmoid; TFLA also studies exponential).</summary>
    public MlstmForgetGate ForgetGate { get; init; } = MlstmForgetGate.Sigmoid;
    /// <summary>Epsilon of the per-head output LayerNorm (fla: 1e-5).</summary>
    public double NormEps { get; init; } = 1e-5;
    /// <summary>Epsilon of the mLSTM normaliser (fla: 1e-6).</summary>
    public double Eps { get; init; } = MlstmKernels.DefaultEps;
    /// <summary>Chunk length of the chunkwise kernel.</summary>
    public int ChunkSize { get; init; } = DecayKernels.DefaultChunk;
}

/// <summary>
/// The mLSTM layer as fla's <c>MLSTM</c>: up-projection to 2 × inner (x, z); causal short conv + SiLU on x; block-diagonal
/// q, k from the conv output and v from x; input and forget gates Linear(3·inner → H) on [q, k, v]; the mLSTM kernel;
/// per-head LayerNorm; learnable skip from the conv output; SiLU(z) output gate; down-projection. Gate initialisation
/// follows xLSTM (forget bias linspace(3, 6), input bias N(0, 0.1), zero gate weights). The bidirectional form adds
/// <c>fgate_bwd</c>, the reversed scan's own forget gate; the input gate is shared (see <see cref="MlstmKernels"/>).
/// </summary>
public sealed class MlstmMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> proj_up;
    private readonly GroupedLinear q_proj;
    private readonly GroupedLinear k_proj;
    private readonly GroupedLinear v_proj;
    private readonly ShortConvolution conv1d;
    private readonly Linear igate;
    private readonly Linear fgate;
    private readonly Linear? fgate_bwd;
    private readonly Parameter o_norm_weight;
    private readonly Parameter learnable_skip;
    private readonly nn.Module<Tensor, Tensor> proj_down;
    private readonly MlstmOptions _options;
    private readonly int _inner;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "proj_up", "proj_down" };

    public MlstmMixer(MixerConfig config, MlstmOptions options) : base(nameof(MlstmMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ProjFactor <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.ProjFactor, "ProjFactor must be positive (fla: 2).");
        if (options.RoundUpTo <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.RoundUpTo, "RoundUpTo must be positive (fla: 64; 1 = no rounding).");
        MixerChecks.ChunkSize(options.ChunkSize, "mLSTM");
        int c = config.ModelDim, h = config.NumHeads;
        _inner = (int)Math.Ceiling(options.ProjFactor * c / options.RoundUpTo) * options.RoundUpTo;
        if (_inner % h != 0)
            throw new ArgumentException($"The mLSTM inner width {_inner} (hidden size {c} × ProjFactor {options.ProjFactor}, rounded up to a multiple of {options.RoundUpTo}) " +
                                        $"is not divisible by the {h} heads; change ProjFactor or RoundUpTo, or the head count.");
        if (options.QkvBlockSize <= 0 || _inner % options.QkvBlockSize != 0)
            throw new ArgumentException($"QkvBlockSize {options.QkvBlockSize} must be positive and divide the inner width {_inner} (fla: 4).");
        _options = options;
        proj_up = nn.Linear(c, 2 * _inner, hasBias: options.Bias);
        q_proj = new GroupedLinear(_inner, options.QkvBlockSize, options.Bias);
        k_proj = new GroupedLinear(_inner, options.QkvBlockSize, options.Bias);
        v_proj = new GroupedLinear(_inner, options.QkvBlockSize, options.Bias);
        conv1d = new ShortConvolution(_inner, options.ConvSize, causal: true, options.ConvBias);
        igate = nn.Linear(3 * _inner, h, hasBias: true);
        fgate = nn.Linear(3 * _inner, h, hasBias: true);
        if (!config.Causal) fgate_bwd = nn.Linear(3 * _inner, h, hasBias: true);
        using (torch.no_grad())
        {
            igate.weight!.zero_();
            igate.bias!.normal_(0.0, 0.1);
            foreach (var gate in new[] { fgate, fgate_bwd })
            {
                if (gate is null) continue;
                gate.weight!.zero_();
                gate.bias!.copy_(torch.linspace(3.0, 6.0, h));
            }
        }
        o_norm_weight = new Parameter(torch.ones(_inner));
        learnable_skip = new Parameter(torch.ones(_inner));
        proj_down = nn.Linear(_inner, c, hasBias: options.Bias);
        RegisterComponents();
    }

    /// <summary>Inner width of the mLSTM cell (heads × head dim).</summary>
    public int InnerDim => _inner;

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var up = proj_up.forward(x);
        var xm = up.narrow(-1, 0, _inner);
        var z = up.narrow(-1, _inner, _inner);
        var xc = conv1d.forward(xm, keyPaddingMask);
        var q = q_proj.forward(xc);
        var k = k_proj.forward(xc);
        var v = v_proj.forward(xm);
        var gates = torch.cat(new[] { q, k, v }, -1);
        var i = igate.forward(gates).transpose(1, 2);                                      // [B, H, T]
        var f = fgate.forward(gates).transpose(1, 2);
        var (qh, kh, vh) = (Heads.Split(q, h), Heads.Split(k, h), Heads.Split(v, h));
        var o = fgate_bwd is null
            ? MlstmKernels.Causal(qh, kh, vh, i, f, keyPaddingMask, forgetGate: _options.ForgetGate, eps: _options.Eps, chunk: _options.ChunkSize)
            : MlstmKernels.Bidirectional(qh, kh, vh, i, f, fgate_bwd.forward(gates).transpose(1, 2), keyPaddingMask,
                forgetGate: _options.ForgetGate, eps: _options.Eps, chunk: _options.ChunkSize);
        o = nn.functional.layer_norm(o, new long[] { o.shape[3] }, eps: _options.NormEps);   // per-head LayerNorm, no bias
        var y = Heads.Merge(o) * o_norm_weight + learnable_skip * xc;
        var output = proj_down.forward(y * nn.functional.silu(z));
        return Heads.ZeroPadded(output, keyPaddingMask).MoveToOuterDisposeScope();
    }
}

/// <summary>Block-diagonal linear map (xLSTM's <c>LinearHeadwiseExpand</c>, fla's <c>GroupedLinear</c>): [.., W] → [.., W] in
/// blocks of <c>blockSize</c>; weight [W/blockSize, blockSize(out), blockSize(in)], init N(0, 2/(5·blockSize)).</summary>
internal sealed class GroupedLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly long _block;

    internal GroupedLinear(long width, long blockSize, bool hasBias) : base(nameof(GroupedLinear))
    {
        _block = blockSize;
        weight = new Parameter(torch.randn(width / blockSize, blockSize, blockSize) * Math.Sqrt(2.0 / 5.0 / blockSize));
        if (hasBias) bias = new Parameter(torch.zeros(width));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        long groups = weight.shape[0];
        var lead = shape.Take(shape.Length - 1).ToArray();
        var y = x.reshape(lead.Concat(new[] { groups, 1L, _block }).ToArray()).matmul(weight.transpose(1, 2))
                 .reshape(shape);
        if (bias is not null) y = y + bias;
        return y.MoveToOuterDisposeScope();
    }
}

using Microsoft.ML.LinearAttention.Attention;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// One pre-norm block: x + Dropout(Mixer(RmsNorm(x), mask)), then x + Dropout(FFN(RmsNorm(x))) with a GELU FFN.
/// Shapes: x [B, T, C], mask [B, T] bool (true = real token) → [B, T, C], zero at padded positions.
/// </summary>
public sealed class EncoderBlock : nn.Module<Tensor, Tensor?, Tensor>, IFfnRecalibrated, IEncoderBlock
{
    private readonly RmsNorm norm1;
    private readonly TokenMixer mixer;
    private readonly RmsNorm norm2;
    private readonly nn.Module<Tensor, Tensor> ffn_in; // Linear; typed as a module so fine-tuning can wrap it (LoRA)
    private readonly nn.Module<Tensor, Tensor> ffn_out;
    private readonly FastDropout drop;

    public EncoderBlock(TokenMixer mixer, int modelDim, double ffnMultiplier, double dropout) : base(nameof(EncoderBlock))
    {
        this.mixer = mixer;
        norm1 = new RmsNorm(modelDim);
        norm2 = new RmsNorm(modelDim);
        int hidden = Math.Max(1, (int)Math.Round(modelDim * ffnMultiplier));
        ffn_in = nn.Linear(modelDim, hidden);
        ffn_out = nn.Linear(hidden, modelDim);
        drop = new FastDropout(dropout);
        RegisterComponents();
    }

    /// <summary>The block's token mixer.</summary>
    public TokenMixer Mixer => mixer;

    Tensor IEncoderBlock.MixerInput(Tensor x) => norm1.forward(x);

    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = x + drop.forward(mixer.forward(norm1.forward(x), mask));
        var f = ffn_out.forward(nn.functional.gelu(ffn_in.forward(norm2.forward(h))));
        if (ffn_recalibration is not null)
        {
            var (scale, shift) = ffn_recalibration.forward(h);
            f = shift + (scale + 1) * f;
        }
        h = h + drop.forward(f);
        return Heads.ZeroPadded(h, mask).MoveToOuterDisposeScope();
    }

    // ---- fine-tuning seam (FineTuning/): recalibration of the FFN branch ----
    private nn.Module<Tensor, (Tensor Scale, Tensor Shift)>? ffn_recalibration;

    /// <summary>
    /// Optional recalibration of the FFN branch (PSRP of Moment Probing+, set by the fine-tuning catalog): (w, b) = f(h)
    /// from the post-attention state h [B, T, C], and the block adds b + (1 + w)·FFN(RmsNorm(h)) instead of FFN(RmsNorm(h)).
    /// </summary>
    public nn.Module<Tensor, (Tensor Scale, Tensor Shift)>? FfnRecalibration
    {
        get => ffn_recalibration;
        set
        {
            register_module(nameof(ffn_recalibration), null!);
            ffn_recalibration = value;
            if (value is not null) register_module(nameof(ffn_recalibration), value);
        }
    }
}

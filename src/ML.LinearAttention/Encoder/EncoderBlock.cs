using Microsoft.ML.LinearAttention.Attention;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// One pre-norm block: x + Dropout(Mixer(RmsNorm(x), mask)), then x + Dropout(FFN(RmsNorm(x))) with a GELU FFN.
/// Shapes: x [B, T, C], mask [B, T] bool (true = real token) → [B, T, C], zero at padded positions.
/// </summary>
public sealed class EncoderBlock : nn.Module<Tensor, Tensor?, Tensor>, IEncoderBlock
{
    private readonly RmsNorm norm1;
    private readonly TokenMixer mixer;
    private readonly RmsNorm norm2;
    private readonly Linear ffn_in;
    private readonly Linear ffn_out;
    private readonly Dropout drop;

    public EncoderBlock(TokenMixer mixer, int modelDim, double ffnMultiplier, double dropout) : base(nameof(EncoderBlock))
    {
        this.mixer = mixer;
        norm1 = new RmsNorm(modelDim);
        norm2 = new RmsNorm(modelDim);
        int hidden = Math.Max(1, (int)Math.Round(modelDim * ffnMultiplier));
        ffn_in = nn.Linear(modelDim, hidden);
        ffn_out = nn.Linear(hidden, modelDim);
        drop = nn.Dropout(dropout);
        RegisterComponents();
    }

    /// <summary>The block's token mixer.</summary>
    public TokenMixer Mixer => mixer;

    Tensor IEncoderBlock.MixerInput(Tensor x) => norm1.forward(x);

    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = x + drop.forward(mixer.forward(norm1.forward(x), mask));
        h = h + drop.forward(ffn_out.forward(nn.functional.gelu(ffn_in.forward(norm2.forward(h)))));
        return Heads.ZeroPadded(h, mask).MoveToOuterDisposeScope();
    }
}

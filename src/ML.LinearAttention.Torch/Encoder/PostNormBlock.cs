using Microsoft.ML.LinearAttention.Attention;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// One BERT (post-norm) block: h = LayerNorm(x + Dropout(Mixer(x, mask))), then LayerNorm(h + Dropout(FFN(h))) with a
/// biased two-layer FFN and BERT's activation. The mixer is any registry mixer (built with q/k/v/o biases).
/// Shapes: x [B, T, C], mask [B, T] bool (true = real token) → [B, T, C], zero at padded positions.
/// </summary>
public sealed class PostNormBlock : nn.Module<Tensor, Tensor?, Tensor>, IEncoderBlock, IFfnRecalibrated
{
    /// <summary>FFN activations: "gelu" (exact erf form, BERT's), "gelu_new" / "gelu_pytorch_tanh" (tanh approximation), "relu".</summary>
    public static readonly IReadOnlyList<string> Activations = new[] { "gelu", "gelu_new", "gelu_pytorch_tanh", "relu" };

    private readonly TokenMixer mixer;
    private readonly LayerNorm attention_norm;
    private readonly nn.Module<Tensor, Tensor> ffn_in; // Linear; typed as a module so fine-tuning can wrap it (LoRA)
    private readonly nn.Module<Tensor, Tensor> ffn_out;
    private readonly LayerNorm ffn_norm;
    private readonly FastDropout drop;
    private readonly string _activation;

    public PostNormBlock(TokenMixer mixer, int modelDim, int ffnHidden, double dropout, double layerNormEps, string activation) : base(nameof(PostNormBlock))
    {
        if (!Activations.Contains(activation))
            throw new ArgumentException($"FFN activation '{activation}' is not supported; use one of {string.Join(", ", Activations)}.", nameof(activation));
        this.mixer = mixer;
        _activation = activation;
        attention_norm = nn.LayerNorm(modelDim, layerNormEps);
        ffn_in = nn.Linear(modelDim, ffnHidden);
        ffn_out = nn.Linear(ffnHidden, modelDim);
        ffn_norm = nn.LayerNorm(modelDim, layerNormEps);
        drop = new FastDropout(dropout);
        RegisterComponents();
    }

    /// <summary>The block's token mixer.</summary>
    public TokenMixer Mixer => mixer;

    Tensor IEncoderBlock.MixerInput(Tensor x) => x.alias();

    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = attention_norm.forward(x + drop.forward(mixer.forward(x, mask)));
        var f = ffn_out.forward(Activate(ffn_in.forward(h), _activation));
        if (ffn_recalibration is not null)
        {
            var (scale, shift) = ffn_recalibration.forward(h);
            f = shift + (scale + 1) * f;
        }
        h = ffn_norm.forward(h + drop.forward(f));
        return Heads.ZeroPadded(h, mask).MoveToOuterDisposeScope();
    }

    // ---- fine-tuning seam (FineTuning/): recalibration of the FFN branch (PSRP of MP+), as in EncoderBlock ----
    private nn.Module<Tensor, (Tensor Scale, Tensor Shift)>? ffn_recalibration;

    /// <summary>Optional recalibration of the FFN branch: (w, b) = f(h) from the post-attention state h, and the block
    /// uses b + (1 + w)·FFN(h) in place of FFN(h) (before the residual and LayerNorm).</summary>
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

    internal static Tensor Activate(Tensor x, string activation) => activation switch
    {
        "gelu" => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" => nn.functional.gelu(x, GELU.Approximate.tanh),
        "relu" => nn.functional.relu(x),
        _ => throw new NotSupportedException($"FFN activation '{activation}' is not supported."),
    };
}

using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.LinearProbe;

/// <summary>Options of <see cref="LinearProbeFineTuning"/>; the head's training recipe is <see cref="FrozenHeadOptions"/>'s.</summary>
public sealed record LinearProbeOptions : FrozenHeadOptions
{
    /// <summary>
    /// Keep and train the model's own head (RMSNorm → dense → GELU → out) instead of a new linear classifier on the
    /// pooled features (the textbook linear probe and the baseline of Moment Probing).
    /// </summary>
    public bool KeepModelHead { get; init; }
}

/// <summary>
/// Linear probing: the encoder is frozen and only the head trains: by default a new linear layer on the pooled
/// features (LayerNorm first for mean pooling, as timm's <c>fc_norm</c>), or the model's own head.
/// </summary>
public sealed class LinearProbeFineTuning : FineTuningMethod<LinearProbeOptions>
{
    /// <inheritdoc/>
    public override void Validate(LinearProbeOptions options, EncoderConfig config) => options.ValidateRecipe();

    /// <inheritdoc/>
    public override void Restructure(SequenceModel model, LinearProbeOptions options, bool finished)
    {
        if (!options.KeepModelHead) model.ReplaceHead(new LinearProbeHead(model.Config.ModelDim, model.Config.Outputs, model.Config.Pooling));
    }

    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, LinearProbeOptions options) => parameter.Part == ModelPart.Head;

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, LinearProbeOptions options)
        => options.KeepModelHead ? "encoder frozen, the model's head trains" : "encoder frozen, a new linear head trains";
}

/// <summary>A linear classifier (or regressor) on the pooled features: [B, C] → [B, Outputs].</summary>
public sealed class LinearProbeHead : SequenceHead
{
    private readonly LayerNorm? fc_norm;
    private readonly Linear fc;

    public LinearProbeHead(int modelDim, int outputs, Pooling pooling) : base(nameof(LinearProbeHead))
    {
        if (pooling == Pooling.Mean) fc_norm = nn.LayerNorm(modelDim);
        fc = nn.Linear(modelDim, outputs);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override bool ReadsTokenStates => false;

    public override Tensor forward(Tensor states, Tensor mask, Tensor pooled)
        => fc.forward(fc_norm is null ? pooled : fc_norm.forward(pooled));
}

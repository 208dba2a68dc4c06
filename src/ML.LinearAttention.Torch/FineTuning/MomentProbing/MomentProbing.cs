using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

/// <summary>
/// Moment Probing (MP): the encoder stays frozen and the <see cref="MomentProbingHead"/> (first- and second-order
/// features of the final tokens) trains in place of a linear probe (reference: <c>--tuning-mode linear_probe
/// --probing-mode mp</c>).
/// </summary>
public sealed class MomentProbingFineTuning : FineTuningMethod<MomentProbingOptions>
{
    /// <inheritdoc/>
    public override MomentProbingOptions Prepare(MomentProbingOptions options, EncoderConfig config)
        => options with { NormalizeSecondOrder = options.NormalizeSecondOrder ?? true };

    /// <inheritdoc/>
    public override void Validate(MomentProbingOptions options, EncoderConfig config) => options.Validate();

    /// <inheritdoc/>
    public override void Restructure(SequenceModel model, MomentProbingOptions options, bool finished)
        => model.ReplaceHead(new MomentProbingHead(model.Config.ModelDim, model.Config.Outputs, model.Config.Pooling, options));

    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, MomentProbingOptions options) => parameter.Part == ModelPart.Head;

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, MomentProbingOptions options)
        => $"encoder frozen; Moment Probing head: {options.HeadPairs().Count} cross-covariance maps of {options.HeadDim}² → {options.FeatureCount:N0} second-order features" +
           (options.NormalizeSecondOrder == true ? " (LayerNorm)" : "");
}

/// <summary>Options of MP+ (<see cref="PsrpFineTuning"/>).</summary>
public sealed record PsrpOptions : FineTuningOptions, IHeadFirstOptions
{
    /// <summary>The Moment Probing head (and, with <see cref="HeadFirst"/>, the recipe of its first stage).</summary>
    public MomentProbingOptions Probe { get; init; } = new();
    /// <summary>Width of PSRP's shared projection (reference: 16).</summary>
    public int Bottleneck { get; init; } = 16;
    /// <summary>Zero-initialise PSRP's up-projections so each block is unchanged at the start (reference: default init, off;
    /// <see cref="HeadFirst"/> implies it).</summary>
    public bool ZeroInitUp { get; init; }
    /// <summary>Train the Moment Probing head first on cached features of the frozen encoder, as <c>moment_probing</c>
    /// does (PSRP starts as the identity, so those features are the encoder's), then the head and PSRP through the
    /// encoder from there, keeping the best validation epoch of both, the head-only result included (default). On small
    /// data MP+ then does not fall below MP. False trains both from the start, as the reference.</summary>
    public bool HeadFirst { get; init; } = true;

    FrozenHeadOptions? IHeadFirstOptions.HeadFirstRecipe => HeadFirst ? Probe : null;
}

/// <summary>
/// MP+ (reference <c>--tuning-mode psrp --probing-mode mp</c>): the Moment Probing head plus a
/// <see cref="PsrpRecalibration"/> in every block; only the head and the PSRP modules train.
/// </summary>
public sealed class PsrpFineTuning : FineTuningMethod<PsrpOptions>
{
    /// <inheritdoc/>
    public override PsrpOptions Prepare(PsrpOptions options, EncoderConfig config)
        => options with { Probe = options.Probe with { NormalizeSecondOrder = options.Probe.NormalizeSecondOrder ?? true } };

    /// <inheritdoc/>
    public override void Validate(PsrpOptions options, EncoderConfig config)
    {
        options.Probe.Validate();
        if (options.Bottleneck <= 0) throw new ArgumentOutOfRangeException(nameof(options), options.Bottleneck, "PSRP Bottleneck must be at least 1 (reference: 16).");
    }

    /// <inheritdoc/>
    public override void Restructure(SequenceModel model, PsrpOptions options, bool finished)
    {
        model.ReplaceHead(new MomentProbingHead(model.Config.ModelDim, model.Config.Outputs, model.Config.Pooling, options.Probe));
        var blocks = model.named_modules().Where(m => m.name.StartsWith("blocks.", StringComparison.Ordinal) && m.name.IndexOf('.', 7) < 0).ToList();
        foreach (var (name, block) in blocks)
        {
            if (block is not IFfnRecalibrated target)
                throw new NotSupportedException($"PSRP cannot recalibrate block '{name}' ({block.GetType().Name}): the block type does not implement IFfnRecalibrated.");
            target.FfnRecalibration = new PsrpRecalibration(model.Config.ModelDim, options.Bottleneck, options.ZeroInitUp || options.HeadFirst);
        }
    }

    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, PsrpOptions options)
        => parameter.Part == ModelPart.Head || parameter.Name.Contains(".ffn_recalibration.", StringComparison.Ordinal);

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, PsrpOptions options)
        => $"encoder frozen; Moment Probing head ({options.Probe.FeatureCount:N0} second-order features) and PSRP (bottleneck {options.Bottleneck}) in {model.Config.NumLayers} block(s)";
}

using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning.FreezeLayers;

/// <summary>Options of <see cref="FreezeLayersFineTuning"/>.</summary>
public sealed record FreezeLayersOptions : FineTuningOptions
{
    /// <summary>How many blocks, counted from the input, stay frozen (0..NumberOfLayers).</summary>
    public int Layers { get; init; } = 1;
    /// <summary>Freeze the embeddings (token, segment, position; the numeric-step projection) as well.</summary>
    public bool FreezeEmbeddings { get; init; } = true;
}

/// <summary>
/// Freezes the embeddings and the first <see cref="FreezeLayersOptions.Layers"/> blocks; the later blocks, the final
/// norm and the head train. The classic recipe when the lower layers hold general features worth keeping.
/// </summary>
public sealed class FreezeLayersFineTuning : FineTuningMethod<FreezeLayersOptions>
{
    /// <inheritdoc/>
    public override void Validate(FreezeLayersOptions options, EncoderConfig config)
    {
        if (options.Layers < 0 || options.Layers > config.NumLayers)
            throw new ArgumentOutOfRangeException(nameof(options), options.Layers,
                $"FreezeLayers.Layers must lie in 0..{config.NumLayers} (the model has {config.NumLayers} blocks).");
    }

    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, FreezeLayersOptions options) => parameter.Part switch
    {
        ModelPart.Stem => !options.FreezeEmbeddings,
        ModelPart.Block => parameter.Block >= options.Layers,
        _ => true,
    };

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, FreezeLayersOptions options)
        => (options.FreezeEmbeddings, options.Layers) switch
        {
            (_, > 0) => $"{(options.FreezeEmbeddings ? "embeddings and " : "")}block(s) 0..{options.Layers - 1} frozen",
            (true, 0) => "embeddings frozen",
            _ => "nothing frozen",
        };
}

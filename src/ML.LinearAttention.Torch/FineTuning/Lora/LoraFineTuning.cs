using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning.Lora;

/// <summary>
/// LoRA as a catalog method: the targeted layers get adapters (<see cref="LoraLayers.Apply"/>); the adapters, the head
/// (<see cref="LoraOptions.TrainHead"/>) and optionally the biases train. After training the updates are folded into the
/// weights (<see cref="LoraOptions.MergeAfterTraining"/>), so the fitted model is a plain model.
/// </summary>
public sealed class LoraFineTuning : FineTuningMethod<LoraOptions>
{
    /// <inheritdoc/>
    public override void Validate(LoraOptions options, EncoderConfig config) => options.Validate();

    /// <inheritdoc/>
    public override void Restructure(SequenceModel model, LoraOptions options, bool finished)
    {
        if (!(finished && options.MergeAfterTraining)) LoraLayers.Apply(model, options);
    }

    /// <inheritdoc/>
    public override bool Trains(ModelParameter parameter, LoraOptions options)
        => parameter.LeafName is "lora_A" or "lora_B"
           || (options.TrainHead && parameter.Part == ModelPart.Head)
           || (options.TrainBiases && parameter.IsBias);

    /// <inheritdoc/>
    public override string? Finish(SequenceModel model, LoraOptions options)
        => options.MergeAfterTraining ? $"LoRA merged into {LoraLayers.MergeAndUnload(model)} layer(s)" : null;

    /// <inheritdoc/>
    public override string? Describe(SequenceModel model, LoraOptions options)
    {
        var layers = LoraLayers.Layers(model);
        var isTarget = LoraLayers.Targets(model, options);
        var skipped = model.named_modules().Where(m => m.module is TorchSharp.Modules.Linear && isTarget(m.name)).Select(m => m.name).ToList();
        return $"LoRA r {options.Rank}, α {options.Alpha:G4} on {layers.Count} layer(s) ({string.Join(", ", layers.Take(4).Select(l => l.Name))}{(layers.Count > 4 ? ", …" : "")})" +
               (skipped.Count > 0 ? $"; {skipped.Count} matching layer(s) held in fields typed Linear could not be wrapped ({string.Join(", ", skipped.Take(3))}{(skipped.Count > 3 ? ", …" : "")})" : "");
    }
}

using Microsoft.ML.LinearAttention.Encoder;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// One fine-tuning method: how it changes a model's structure and which parameters then train. The registry calls
/// <see cref="Restructure"/> on a model being set up (after its initial weights are loaded) and again on a model
/// being rebuilt to load saved weights, so it must build the same modules both times.
/// </summary>
/// <typeparam name="TOptions">The method's options record.</typeparam>
public abstract class FineTuningMethod<TOptions> where TOptions : FineTuningOptions, new()
{
    /// <summary>
    /// Settles, for a model being set up, what <paramref name="options"/> leave open (e.g. a layout choice whose unset
    /// value must keep meaning the old layout in models saved before it existed). Not called when a saved model is
    /// rebuilt: what was recorded then is rebuilt as it was.
    /// </summary>
    public virtual TOptions Prepare(TOptions options, EncoderConfig config) => options;

    /// <summary>Throws a clear error when <paramref name="options"/> do not fit the model.</summary>
    public virtual void Validate(TOptions options, EncoderConfig config) { }

    /// <summary>
    /// Structure changes only: wrap layers, replace the head, add modules. <paramref name="finished"/> is true when
    /// rebuilding a model whose training ended (after <see cref="Finish"/>, e.g. LoRA already merged).
    /// </summary>
    public virtual void Restructure(SequenceModel model, TOptions options, bool finished) { }

    /// <summary>True when <paramref name="parameter"/> trains (after <see cref="Restructure"/>).</summary>
    public abstract bool Trains(ModelParameter parameter, TOptions options);

    /// <summary>After training: e.g. fold LoRA updates into the weights. Returns a line for the log, or null.</summary>
    public virtual string? Finish(SequenceModel model, TOptions options) => null;

    /// <summary>One line for the log about what <see cref="Restructure"/> did, or null.</summary>
    public virtual string? Describe(SequenceModel model, TOptions options) => null;
}

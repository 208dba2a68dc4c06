using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// A network that <see cref="ModelTrainer"/> trains and the estimators' transformers serve (the text/sequence
/// <c>Encoder.SequenceModel</c> and the image <c>Vision.VisionModel</c> derive from it). The trainer knows models only
/// through this contract. Its configuration JSON and its state dictionary are the whole saved model.
/// </summary>
public abstract class TrainableModel : nn.Module
{
    protected TrainableModel(string name) : base(name) { }

    /// <summary>Head outputs [B, Outputs]: class logits, or the standardised regression value.</summary>
    public abstract Tensor Forward(ModelBatch batch);

    /// <summary>Regression targets in the model's standardised units (identity for classifiers).</summary>
    public virtual Tensor StandardizeTarget(Tensor y) => y;

    /// <summary>Regression output back in the label's units (identity for classifiers).</summary>
    public virtual Tensor DestandardizeTarget(Tensor y) => y;

    /// <summary>A new model of the same architecture with fresh weights (the bf16 working copy of mixed precision).</summary>
    public abstract TrainableModel CreateSibling();

    /// <summary>The configuration as JSON, stored in saved models so that the model rebuilds itself exactly.</summary>
    public abstract string ConfigurationJson { get; }

    /// <summary>A few words on the sizes, for error messages (e.g. "128 hidden, 2 layers, 3 outputs").</summary>
    public abstract string Describe();

    /// <summary>
    /// Activation checkpointing while training (a run-time switch the trainer sets from
    /// <see cref="TrainingSettings.ActivationCheckpointing"/>, not saved with the model). Models without blocks to
    /// recompute ignore it.
    /// </summary>
    public virtual bool CheckpointActivations { get; set; }

    /// <summary>Rethrows (once) an exception raised while recomputing checkpointed activations in backward(); the
    /// trainer calls it after every backward().</summary>
    public virtual void ThrowIfCheckpointFailed() { }

    /// <summary>True when the trainer may write and resume <see cref="TrainingCheckpoints"/> for this model.</summary>
    public virtual bool SupportsResumableCheckpoints => false;

    /// <summary>Whether Precision Auto may train this model in bf16 mixed precision on a CPU with bf16 instructions
    /// (when it is wide enough to gain): true where bf16 CPU training was measured to keep accuracy.</summary>
    public virtual bool AutoBFloat16OnCpu => false;
}

using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// A network that <see cref="ModelTrainer"/> trains and the estimators' transformers serve: the text/sequence
/// <see cref="SequenceModel"/> and the image <c>Vision.VisionModel</c>. Its configuration JSON and its state
/// dictionary are the whole saved model.
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
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// A task head that replaces <see cref="SequenceModel"/>'s built-in one (set by the fine-tuning catalog: linear probe,
/// Moment Probing). Inputs: the final token states [B, T, C] (after the final norm), the mask [B, T] bool (true = real
/// token; for CLS pooling of numeric input it includes the prepended CLS step), and the pooled vector [B, C] with
/// side features already fused in. Output: [B, Outputs].
/// </summary>
public abstract class SequenceHead : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    protected SequenceHead(string name) : base(name) { }

    /// <summary>False when the head reads only the pooled vector, so a cache of a frozen encoder's output need not keep
    /// the token states.</summary>
    public virtual bool ReadsTokenStates => true;
}

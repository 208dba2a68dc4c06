using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// A block whose FFN branch can be recalibrated (PSRP of Moment Probing+, set by the fine-tuning catalog): given
/// (w, b) = f(h) from the block's post-attention state h [B, T, C], the block uses b + (1 + w)·FFN(·) in place of FFN(·).
/// </summary>
public interface IFfnRecalibrated
{
    /// <summary>The recalibration module, or null (plain block).</summary>
    nn.Module<Tensor, (Tensor Scale, Tensor Shift)>? FfnRecalibration { get; set; }
}

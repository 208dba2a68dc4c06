using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// A head whose first-order part alone is a linear probe (Moment Probing). With <see cref="FrozenHeadOptions.ProbeFirst"/>
/// the frozen-head trainer trains that part first, with the rest silent, then the whole head from there, and keeps the
/// best epoch of both stages: on validation the head is then never worse than the probe it contains.
/// </summary>
public interface IProbeFirstHead
{
    /// <summary>Names (relative to the head) of the first-order part's parameters.</summary>
    IReadOnlyCollection<string> FirstOrderParameterNames { get; }

    /// <summary>Zeroes the classifier of everything but the first-order part, so that the head's output is the first
    /// order's alone until the second stage trains it.</summary>
    void SilenceSecondOrder();

    /// <summary>The head's output while the rest is silent (equal to <c>forward</c> then), without computing it.</summary>
    Tensor FirstOrderOutput(Tensor states, Tensor mask, Tensor pooled);
}

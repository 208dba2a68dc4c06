using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// A head whose first-order part alone is a linear probe (Moment Probing). With <see cref="FrozenHeadOptions.ProbeFirst"/>
/// the frozen-head trainer trains that part first as the linear probe itself (same layers, initialisation, data order
/// and recipe, so stage 1 ends where <c>linear_probe</c> ends), with the rest silent, then the whole head from there, and
/// keeps the best epoch of both stages: on validation the head is then never worse than the probe it contains.
/// </summary>
public interface IProbeFirstHead
{
    /// <summary>Names (relative to the head) of the first-order part's parameters.</summary>
    IReadOnlyCollection<string> FirstOrderParameterNames { get; }

    /// <summary>Zeroes the classifier of everything but the first-order part, so that the head's output is the first
    /// order's alone until the second stage trains it.</summary>
    void SilenceSecondOrder();

    /// <summary>The first-order part's own output: the linear probe's logits, which stage 1 trains (the rest silent, so
    /// <c>forward</c> differs from it only by the head's fixed mixing of its parts, which <see cref="AdoptFirstOrder"/> undoes).</summary>
    Tensor FirstOrderOutput(Tensor states, Tensor mask, Tensor pooled);

    /// <summary>With the rest silent, rescales the first-order part so that <c>forward</c> equals
    /// <see cref="FirstOrderOutput"/> (Moment Probing averages its two logits, so its first-order classifier doubles).
    /// Called once per set of weights, when they pass from stage 1 to the whole head.</summary>
    void AdoptFirstOrder();
}

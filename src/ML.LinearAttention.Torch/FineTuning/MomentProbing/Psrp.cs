using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

/// <summary>
/// PSRP, the "partially shared module learning two recalibrating parameters" of MP+ (reference <c>PSRP.py</c>): one
/// shared down-projection, ReLU, and two up-projections giving a scale w and a shift b, all without bias:
/// z = ReLU(down(h)), w = up_weight(z), b = up_bias(z). The block then adds b + (1 + w)·FFN(norm(h)).
/// Shapes: h [B, T, C] → (w, b), each [B, T, C].
/// </summary>
public sealed class PsrpRecalibration : nn.Module<Tensor, (Tensor Scale, Tensor Shift)>
{
    private readonly Linear down;
    private readonly Linear up_weight;
    private readonly Linear up_bias;

    /// <param name="modelDim">C.</param>
    /// <param name="bottleneck">Width of the shared projection (reference: 16, its <c>reduction</c> argument).</param>
    /// <param name="zeroInitUp">Start the up-projections at zero so the block is unchanged at the start (the reference uses PyTorch's default init).</param>
    public PsrpRecalibration(int modelDim, int bottleneck = 16, bool zeroInitUp = false) : base(nameof(PsrpRecalibration))
    {
        down = nn.Linear(modelDim, bottleneck, hasBias: false);
        up_weight = nn.Linear(bottleneck, modelDim, hasBias: false);
        up_bias = nn.Linear(bottleneck, modelDim, hasBias: false);
        if (zeroInitUp)
        {
            using var _ = no_grad();
            up_weight.weight.zero_();
            up_bias.weight.zero_();
        }
        RegisterComponents();
    }

    public override (Tensor Scale, Tensor Shift) forward(Tensor h)
    {
        using var scope = NewDisposeScope();
        var z = nn.functional.relu(down.forward(h));
        return (up_weight.forward(z).MoveToOuterDisposeScope(), up_bias.forward(z).MoveToOuterDisposeScope());
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>
/// fla's <c>FusedRMSNormGated</c>: RMSNorm(o) · weight · act(gate) over the last dimension, statistics in fp32;
/// act is "swish" (SiLU, fla's default, used by DeltaNet, Gated DeltaNet and MoM) or "sigmoid" (KDA).
/// </summary>
public sealed class GatedRmsNorm : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;
    private readonly bool _sigmoid;

    public GatedRmsNorm(long dim, double eps = 1e-5, string activation = "swish") : base(nameof(GatedRmsNorm))
    {
        if (activation != "swish" && activation != "sigmoid")
            throw new ArgumentException($"Unknown gate activation '{activation}'; use 'swish' or 'sigmoid'.", nameof(activation));
        weight = new Parameter(torch.ones(dim));
        _eps = eps;
        _sigmoid = activation == "sigmoid";
        RegisterComponents();
    }

    public override Tensor forward(Tensor o, Tensor gate)
    {
        using var scope = NewDisposeScope();
        var y = RmsNorm.Functional(o.to(ScalarType.Float32), weight, _eps);
        var g = gate.to(ScalarType.Float32);
        y = y * (_sigmoid ? torch.sigmoid(g) : nn.functional.silu(g));
        return y.to(o.dtype).MoveToOuterDisposeScope();
    }
}

/// <summary>Small pieces shared by the delta-rule mixers.</summary>
internal static class DeltaMixing
{
    /// <summary>Key and value widths (H·Dk, H·Dv) from expansion ratios, validated against the head count.</summary>
    internal static (int keyDim, int valueDim) Dims(MixerConfig config, double expandK, double expandV, string mechanism, string valueName = "ExpandV")
        => (MixerChecks.ExpandedWidth(config, expandK, "ExpandK", mechanism), MixerChecks.ExpandedWidth(config, expandV, valueName, mechanism));

    /// <summary>β = sigmoid(b_proj(x)) as [B, H, T] (×2 with negative eigenvalues allowed).</summary>
    internal static Tensor Beta(Linear bProj, Tensor x, bool allowNegativeEigenvalues)
    {
        var beta = torch.sigmoid(bProj.forward(x)).transpose(1, 2);
        return allowNegativeEigenvalues ? beta * 2 : beta;
    }

    /// <summary>Mamba2 initialisation of GDN / MoM: A ~ U(0, 16) stored as log A; dt log-uniform in [1e-3, 0.1] (floor 1e-4), stored as softplus⁻¹(dt).</summary>
    internal static (Tensor aLog, Tensor dtBias) Mamba2Init(long count)
    {
        var a = torch.empty(count).uniform_(0, 16);
        var dt = (torch.rand(count) * (Math.Log(0.1) - Math.Log(0.001)) + Math.Log(0.001)).exp().clamp_min(1e-4);
        var invDt = dt + torch.log(-torch.expm1(-dt));
        return (a.log(), invDt);
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels;

/// <summary>
/// The feature maps of fla's <c>LinearAttention</c> that are not elementwise (fla <c>fla/modules/feature_map.py</c>),
/// as pure kernels with naive twins. Shapes: x [B, H, T, D] (any leading dims) → [.., F]; weights act on the last
/// dimension and are shared by all heads, as in fla.
/// </summary>
public static class FeatureMapKernels
{
    /// <summary>T2R (Kasai et al. 2021): relu(x Wᵀ + b). w [F, D], b [F] or null → [.., F].</summary>
    public static Tensor T2R(Tensor x, Tensor weight, Tensor? bias)
        => nn.functional.relu(nn.functional.linear(x, weight.to(x.dtype), bias?.to(x.dtype)));

    /// <summary>Naive twin of <see cref="T2R"/>: explicit sums over D in fp32.</summary>
    public static Tensor T2RNaive(Tensor x, Tensor weight, Tensor? bias)
        => nn.functional.relu(LinearNaive(x, weight, bias)).to(x.dtype);

    /// <summary>
    /// fla's <c>elementwise_product</c> (HadamardFeatureMap): (x W1ᵀ + b1) ⊙ (x W2ᵀ + b2). w1, w2 [F, D], b1, b2 [F] or
    /// null → [.., F]. Can be negative: use it without the denominator (fla's default <c>do_feature_map_norm=False</c>).
    /// </summary>
    public static Tensor ElementwiseProduct(Tensor x, Tensor weight1, Tensor? bias1, Tensor weight2, Tensor? bias2)
        => nn.functional.linear(x, weight1.to(x.dtype), bias1?.to(x.dtype)) * nn.functional.linear(x, weight2.to(x.dtype), bias2?.to(x.dtype));

    /// <summary>Naive twin of <see cref="ElementwiseProduct"/>, fp32.</summary>
    public static Tensor ElementwiseProductNaive(Tensor x, Tensor weight1, Tensor? bias1, Tensor weight2, Tensor? bias2)
        => (LinearNaive(x, weight1, bias1) * LinearNaive(x, weight2, bias2)).to(x.dtype);

    /// <summary>
    /// DPFP (Schlag et al. 2021) with ν = <paramref name="nu"/>: r = [relu(x), relu(−x)] (2D dims), then for
    /// j = 1..ν the products r ⊙ roll(r, j), concatenated → [.., 2Dν]. Non-negative. One gather instead of ν rolls.
    /// </summary>
    public static Tensor Dpfp(Tensor x, int nu = 4)
    {
        CheckNu(nu, x);
        using var scope = NewDisposeScope();
        var r = torch.cat(new[] { nn.functional.relu(x), nn.functional.relu(-x) }, -1);
        long n = r.shape[^1];
        // roll(r, j)[i] = r[(i − j) mod n]; block j−1 of the output holds shift j.
        var idx = torch.arange(1, nu + 1, dtype: ScalarType.Int64, device: x.device).view(nu, 1);
        var gather = (torch.arange(n, dtype: ScalarType.Int64, device: x.device).view(1, n) - idx).remainder(n).view(-1);
        var reps = Enumerable.Repeat(1L, (int)r.dim()).ToArray();
        reps[^1] = nu;
        return (r.repeat(reps) * r.index_select(-1, gather)).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Dpfp"/>: fla's loop of rolls, fp32.</summary>
    public static Tensor DpfpNaive(Tensor x, int nu = 4)
    {
        CheckNu(nu, x);
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var r = torch.cat(new[] { nn.functional.relu(xf), nn.functional.relu(-xf) }, -1);
        var rolled = torch.cat(Enumerable.Range(1, nu).Select(j => r.roll(j, -1)).ToArray(), -1);
        var repeated = torch.cat(Enumerable.Repeat(r, nu).ToArray(), -1);
        return (repeated * rolled).to(x.dtype).MoveToOuterDisposeScope();
    }

    private static Tensor LinearNaive(Tensor x, Tensor weight, Tensor? bias)
    {
        // Σ_d x[.., d] · W[f, d] as an explicit broadcast product, so it shares no code path with linear().
        var y = (x.to(ScalarType.Float32).unsqueeze(-2) * weight.to(ScalarType.Float32)).sum(-1);
        return bias is null ? y : y + bias.to(ScalarType.Float32);
    }

    private static void CheckNu(int nu, Tensor x)
    {
        if (nu < 1 || nu >= 2 * x.shape[^1])
            throw new ArgumentOutOfRangeException(nameof(nu), nu, $"DPFP ν must lie in 1..{2 * x.shape[^1] - 1} (2·head dim − 1) so that the rolled copies differ; fla uses 4.");
    }
}

/// <summary>
/// One feature map φ of the "linear" mechanism, by name, as a module (holding the weights of the learned maps).
/// Parameter-free: "elu" (elu+1), "relu", "identity", "dpfp". Learned (fla's defaults): "t2r" = relu(Linear(D→F),
/// no bias), "elementwise_product" = Linear1(x) ⊙ Linear2(x) (D→F, with bias), weights shared by all heads and
/// initialised like PyTorch's nn.Linear. Shapes: x [B, H, T, D] → [B, H, T, <see cref="OutputDim"/>].
/// </summary>
public sealed class LearnableFeatureMap : nn.Module<Tensor, Tensor>
{
    /// <summary>Every name accepted by <see cref="LinearMixerOptions.FeatureMap"/>.</summary>
    public static readonly IReadOnlyList<string> Names = new[] { "elu", "relu", "identity", "dpfp", "t2r", "elementwise_product" };

    private readonly Linear? layer;
    private readonly Linear? layer1;
    private readonly Linear? layer2;
    private readonly string _name;
    private readonly int _nu;

    /// <param name="name">One of <see cref="Names"/> (case-insensitive).</param>
    /// <param name="headDim">Input dimension D.</param>
    /// <param name="featureDim">Output dimension F of the learned maps; 0 = D (fla).</param>
    /// <param name="dpfpNu">ν of DPFP (fla: 4).</param>
    public LearnableFeatureMap(string name, int headDim, int featureDim = 0, int dpfpNu = 4) : base(nameof(LearnableFeatureMap))
    {
        _name = Normalize(name);
        if (featureDim < 0) throw new ArgumentOutOfRangeException(nameof(featureDim), featureDim, "FeatureDim must be 0 (the head dimension) or positive.");
        if (_name == "dpfp" && (dpfpNu < 1 || dpfpNu >= 2 * headDim))
            throw new ArgumentOutOfRangeException(nameof(dpfpNu), dpfpNu, $"DpfpNu must lie in 1..{2 * headDim - 1} for head dimension {headDim}; fla uses 4.");
        int f = featureDim == 0 ? headDim : featureDim;
        _nu = dpfpNu;
        if (_name == "t2r") layer = nn.Linear(headDim, f, hasBias: false);
        if (_name == "elementwise_product")
        {
            layer1 = nn.Linear(headDim, f, hasBias: true);
            layer2 = nn.Linear(headDim, f, hasBias: true);
        }
        OutputDim = _name switch
        {
            "dpfp" => 2 * headDim * dpfpNu,
            "t2r" or "elementwise_product" => f,
            _ => headDim,
        };
        RegisterComponents();
    }

    /// <summary>Size of φ(x)'s last dimension.</summary>
    public int OutputDim { get; }

    /// <summary>True when φ is never negative (so the normalized kernel is safe).</summary>
    public static bool IsNonNegative(string name) => Normalize(name) is not ("identity" or "elementwise_product");

    /// <summary>Lower-case name, or an error listing the known maps.</summary>
    public static string Normalize(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var n = name.Trim().ToLowerInvariant();
        if (!Names.Contains(n))
            throw new ArgumentException($"Unknown feature map '{name}'. Known maps: {string.Join(", ", Names)}.", nameof(name));
        return n;
    }

    public override Tensor forward(Tensor x) => _name switch
    {
        "dpfp" => FeatureMapKernels.Dpfp(x, _nu),
        "t2r" => FeatureMapKernels.T2R(x, layer!.weight, layer.bias),
        "elementwise_product" => FeatureMapKernels.ElementwiseProduct(x, layer1!.weight, layer1.bias, layer2!.weight, layer2.bias),
        _ => FeatureMaps.Apply(_name, x),
    };
}

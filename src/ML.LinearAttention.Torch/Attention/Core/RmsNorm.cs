using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>RMSNorm over the last dimension (TorchSharp 0.107 has none); statistics in fp32 for bf16 inputs.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public RmsNorm(long dim, double eps = 1e-5) : base(nameof(RmsNorm))
    {
        weight = new Parameter(torch.ones(dim));
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The epsilon under the square root (the ONNX export writes it into the graph).</summary>
    internal double Eps => _eps;

    /// <summary>On CUDA the fused kernels (<see cref="Kernels.Cuda.FusedRmsNorm"/>, the same arithmetic in one launch each way); elsewhere <see cref="Functional"/>.</summary>
    public override Tensor forward(Tensor x)
        => x.device_type == DeviceType.CUDA ? Kernels.Cuda.FusedRmsNorm.Apply(x, weight, _eps) : Functional(x, weight, _eps);

    /// <summary>x · rsqrt(mean(x²) + eps) · weight (weight may be null).</summary>
    public static Tensor Functional(Tensor x, Tensor? weight, double eps = 1e-5)
    {
        using var scope = NewDisposeScope();
        var y = Normalize(x, new long[] { -1 }, eps);
        if (weight is not null) y = y * weight.to(x.dtype);
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// x · rsqrt(mean(x², <paramref name="dims"/>) + eps) without a weight (SRMSNorm when over the last dimension);
    /// statistics in fp32, result in x's dtype. TransNormer also normalizes over all heads jointly (dims 1 and 3).
    /// </summary>
    public static Tensor Normalize(Tensor x, long[] dims, double eps = 1e-5)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        return (xf * (xf.square().mean(dims, keepdim: true) + eps).rsqrt()).to(x.dtype).MoveToOuterDisposeScope();
    }
}

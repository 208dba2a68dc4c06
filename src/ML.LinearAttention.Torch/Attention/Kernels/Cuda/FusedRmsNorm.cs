using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// RMSNorm over the last dimension, y = x · rsqrt(mean(x²) + eps) · w, as one CUDA kernel forward and three backward
/// (rms_norm.cu: dx one warp per row; dw as column sums in a fixed order), fp32 statistics and arithmetic, differentiable
/// in x and w. The libtorch form (<see cref="Reference"/>) takes about ten kernels each way with fp32 copies of x;
/// elsewhere (CPU, switched off, w in another dtype than x) it is what runs.
/// </summary>
public static class FusedRmsNorm
{
    /// <summary>Environment variable that switches the kernels off ("0"): <see cref="FusedKernelOptions.RmsNormEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_RMSNORM";

    /// <summary>Null when <see cref="Apply(Tensor, Tensor?, double)"/> would run the kernels, else why not.</summary>
    public static string? UnavailableReason(Tensor x, Tensor? weight)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (FusedLaunch.InType(x.dtype) < 0) return $"dtype {x.dtype} is not fp32, bf16 or fp16.";
        if (x.dim() == 0 || x.numel() == 0) return "empty input.";
        if (x.shape[^1] > int.MaxValue) return "the normalized dimension exceeds an int.";
        if (weight is not null && (weight.dtype != x.dtype || weight.dim() != 1 || weight.shape[0] != x.shape[^1] || weight.device_index != x.device_index))
            return $"the weight ({weight.dtype}, [{string.Join(", ", weight.shape)}]) is not a vector of x's dtype ({x.dtype}) and width ({x.shape[^1]}).";
        return FusedLinearAttention.UnavailableReason(x.device);
    }

    /// <summary>RMSNorm of x with weight w (or none): the kernels when <see cref="FusedKernelOptions.RmsNormEnabled"/> and available, else <see cref="Reference"/>.</summary>
    public static Tensor Apply(Tensor x, Tensor? weight, double eps = 1e-5) => Apply(x, weight, eps, FusedKernelOptions.Current.RmsNormEnabled);

    /// <summary>As <see cref="Apply(Tensor, Tensor?, double)"/>, with the switch given (the verification runs the kernels regardless).</summary>
    internal static Tensor Apply(Tensor x, Tensor? weight, double eps, bool fused)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() == 0) throw new ArgumentException("RMSNorm needs at least one dimension (the features); got a scalar.", nameof(x));
        if (!fused || x.device_type != DeviceType.CUDA || UnavailableReason(x, weight) is not null) return Reference(x, weight, eps);
        return weight is null
            ? FusedRmsNormFunction.apply(x, new AutogradArguments(eps))
            : FusedRmsNormWeightedFunction.apply(x, weight, new AutogradArguments(eps));
    }

    /// <summary>The libtorch form: statistics in fp32, the normalized x in x's dtype, times the weight in x's dtype.</summary>
    public static Tensor Reference(Tensor x, Tensor? weight, double eps = 1e-5)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var y = (xf * (xf.square().mean(new long[] { -1 }, keepdim: true) + eps).rsqrt()).to(x.dtype);
        if (weight is not null) y = y * weight.to(x.dtype);
        return y.MoveToOuterDisposeScope();
    }

    private static (IntPtr Fwd, IntPtr Dx, IntPtr DwPartial, IntPtr DwFinish) Functions(Tensor x)
    {
        var k = FusedModuleCache.ShapeFreeKernels(x, CudaSources.RmsNorm, "rms_norm_fwd", "rms_norm_bwd_dx", "rms_norm_bwd_dw_partial", "rms_norm_bwd_dw_finish");
        return (k[0], k[1], k[2], k[3]);
    }

    /// <summary>Blocks of the row kernels: one warp per row, eight per 256-thread block.</summary>
    internal static long RowBlocks(long rows) => (rows + 7) / 8;

    /// <summary>Rows per dw slice: 256, more when the rows would need more slices than a grid's y dimension takes.</summary>
    internal static long RowsPerSlice(long rows) => Math.Max(256, (rows + 65534) / 65535);

    internal static (Tensor Y, Tensor Rstd) Forward(Tensor x, Tensor? weight, double eps)
    {
        long c = x.shape[^1], rows = x.numel() / c;
        var y = torch.empty_like(x);
        var rstd = torch.empty(rows, dtype: ScalarType.Float32, device: x.device);
        FusedModuleCache.Launch(Functions(x).Fwd, RowBlocks(rows), 1, 0, FusedLaunch.Ptr(x), FusedLaunch.Ptr(weight), FusedLaunch.Ptr(y),
            FusedLaunch.Ptr(rstd), rows, c, (uint)BitConverter.SingleToInt32Bits((float)eps));
        return (y, rstd);
    }

    internal static (Tensor Dx, Tensor? Dw) Backward(Tensor x, Tensor? weight, Tensor rstd, Tensor dy)
    {
        long c = x.shape[^1], rows = x.numel() / c;
        var kernels = Functions(x);
        var dx = torch.empty_like(x);
        FusedModuleCache.Launch(kernels.Dx, RowBlocks(rows), 1, 0, FusedLaunch.Ptr(x), FusedLaunch.Ptr(weight), FusedLaunch.Ptr(rstd),
            FusedLaunch.Ptr(dy), FusedLaunch.Ptr(dx), rows, c);
        if (weight is null) return (dx, null);
        long perSlice = RowsPerSlice(rows), slices = (rows + perSlice - 1) / perSlice, columnBlocks = (c + 255) / 256;
        using var partial = torch.empty(new[] { slices, c }, dtype: ScalarType.Float32, device: x.device);
        var dw = torch.empty_like(weight);
        FusedModuleCache.Launch(kernels.DwPartial, columnBlocks, slices, 0, FusedLaunch.Ptr(x), FusedLaunch.Ptr(rstd), FusedLaunch.Ptr(dy),
            FusedLaunch.Ptr(partial), rows, c, perSlice);
        FusedModuleCache.Launch(kernels.DwFinish, columnBlocks, 1, 0, FusedLaunch.Ptr(partial), slices, c, FusedLaunch.Ptr(dw));
        return (dx, dw);
    }
}

/// <summary>Autograd wrapper of the kernels without a weight: forward saves x and the per-row rsqrt.</summary>
internal sealed class FusedRmsNormFunction : autograd.SingleTensorFunction<FusedRmsNormFunction>
{
    public override string Name => "FusedRmsNorm";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var x = ((Tensor)vars[0]).contiguous();
        var (y, rstd) = FusedRmsNorm.Forward(x, null, (double)((AutogradArguments)vars[1]).Value!);
        ctx.save_for_backward(new List<Tensor> { x.detach(), rstd });
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused RMSNorm", () =>
        {
            var saved = ctx.get_saved_variables();
            var (dx, _) = FusedRmsNorm.Backward(saved[0], null, saved[1], grad_output.to(saved[0].dtype).contiguous());
            return AutogradWrappers.Return(grad_output, dx);
        });
}

/// <summary>Autograd wrapper of the kernels with a weight: forward saves x, w and the per-row rsqrt.</summary>
internal sealed class FusedRmsNormWeightedFunction : autograd.SingleTensorFunction<FusedRmsNormWeightedFunction>
{
    public override string Name => "FusedRmsNormWeighted";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var x = ((Tensor)vars[0]).contiguous();
        var w = ((Tensor)vars[1]).contiguous();
        var (y, rstd) = FusedRmsNorm.Forward(x, w, (double)((AutogradArguments)vars[2]).Value!);
        ctx.save_for_backward(new List<Tensor> { x.detach(), w.detach(), rstd });
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused RMSNorm", () =>
        {
            var saved = ctx.get_saved_variables();
            var (dx, dw) = FusedRmsNorm.Backward(saved[0], saved[1], saved[2], grad_output.to(saved[0].dtype).contiguous());
            return AutogradWrappers.Return(grad_output, dx, dw!);
        });
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Rotate-half rotary positions (<see cref="Rotary.Apply"/>) as one CUDA kernel each way (rotary.cu): x read once in its
/// own layout (the head split's strided view included), the fp32 tables read per position, the result written once,
/// contiguous. The libtorch form takes five kernels each way with an fp32 copy of x. Both round the same fp32 products
/// and sum, so the kernel's output and gradient equal the libtorch form's to the bit; <c>bench kernels --verify-fused
/// --only rotary</c> checks that on a GPU and tests/FusedKernelEmulator (rotary.cpp) on the CPU.
/// </summary>
public static class FusedRotary
{
    /// <summary>Environment variable that switches the kernel on ("0" switches it off; on by default): <see cref="FusedKernelOptions.RotaryEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_ROTARY";

    /// <summary>Null when the kernel takes x [B, H, T, D], else why not.</summary>
    public static string? UnavailableReason(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (FusedLaunch.InType(x.dtype) < 0) return $"dtype {x.dtype} is not fp32, bf16 or fp16.";
        if (x.dim() != 4) return $"x is not [B, H, T, D] (shape {Heads.Shape(x)}).";
        if (x.numel() == 0) return "empty input.";
        if (x.shape[3] % 2 != 0 || x.shape[3] > int.MaxValue) return $"the head dimension {x.shape[3]} is not an even int.";
        if (x.stride(3) != 1) return "the channels are not contiguous (stride of the last dimension is not 1).";
        return FusedLinearAttention.UnavailableReason(x.device);
    }

    /// <summary>
    /// x·cos + roll(x, D/2)·signedSin on x [B, H, T, D] with the tables [T, D] (fp32, contiguous) of
    /// <c>Rotary.HalfSplitTables</c>; differentiable in x. Call only where <see cref="UnavailableReason"/> is null.
    /// </summary>
    internal static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
        => FusedRotaryFunction.apply(x, new AutogradArguments((cos.contiguous(), signedSin.contiguous())));

    /// <summary>Blocks of the row kernel: one warp per (b, h, t) row, eight per 256-thread block.</summary>
    internal static long RowBlocks(long rows) => (rows + 7) / 8;

    /// <summary>
    /// The kernel on <paramref name="input"/> (x forward, dy backward) → [B, H, T, D] of its dtype: contiguous, or with
    /// <paramref name="timeMajor"/> a [B, T, H, D] buffer seen as [B, H, T, D] (the head split's layout, so that the
    /// backward's dx flows through the split's transpose and view without a copy).
    /// </summary>
    internal static Tensor Run(Tensor input, Tensor cos, Tensor signedSin, bool backward, bool timeMajor = false)
    {
        long b = input.shape[0], h = input.shape[1], t = input.shape[2], d = input.shape[3], rows = b * h * t;
        var output = timeMajor
            ? torch.empty(new[] { b, t, h, d }, dtype: input.dtype, device: input.device).transpose(1, 2)
            : torch.empty(new[] { b, h, t, d }, dtype: input.dtype, device: input.device);
        var kernel = FusedModuleCache.ShapeFreeKernels(input, CudaSources.Rotary, "rotary_half_split")[0];
        long inputAddress = Runtime.NativeTensorAccess.StridedDataPointer(input).ToInt64();   // read through its strides
        FusedModuleCache.Launch(kernel, RowBlocks(rows), 1, 0, inputAddress, FusedLaunch.Ptr(cos), FusedLaunch.Ptr(signedSin), FusedLaunch.Ptr(output),
            rows, h, t, d, input.stride(0), input.stride(1), input.stride(2), output.stride(0), output.stride(1), output.stride(2), backward ? 1 : 0);
        return output;
    }

    /// <summary>Whether x keeps time outside heads in memory (the head split's [B, T, H, D] view), so dx should too.</summary>
    internal static bool IsTimeMajor(Tensor x) => x.shape[1] > 1 && x.shape[2] > 1 && x.stride(2) > x.stride(1);
}

/// <summary>Autograd wrapper of the rotary kernel: forward keeps the tables, backward runs the kernel on dy.</summary>
internal sealed class FusedRotaryFunction : autograd.SingleTensorFunction<FusedRotaryFunction>
{
    public override string Name => "FusedRotary";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var x = (Tensor)vars[0];
        var (cos, sin) = ((Tensor, Tensor))((AutogradArguments)vars[1]).Value!;
        ctx.save_for_backward(new List<Tensor> { cos, sin });
        ctx.save_data("timeMajor", FusedRotary.IsTimeMajor(x));
        return FusedRotary.Run(x, cos, sin, backward: false);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused rotary positions", () =>
        {
            var saved = ctx.get_saved_variables();
            var dy = grad_output.stride(3) == 1 ? grad_output : grad_output.contiguous();
            return AutogradWrappers.Return(grad_output, FusedRotary.Run(dy, saved[0], saved[1], backward: true, timeMajor: (bool)ctx.get_data("timeMajor")));
        });
}

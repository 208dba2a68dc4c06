using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Hedgehog's feature map φ(y) = [softmax(y), softmax(−y)] over the last dimension as one CUDA kernel each way
/// (hedgehog_map.cuh), differentiable in y. Shapes: y [..., F] → [..., 2F]. Elsewhere (CPU, other
/// dtypes, switched off) it is <see cref="Reference"/>, the libtorch form.
/// </summary>
public static class FusedHedgehogMap
{
    /// <summary>Environment variable that switches the kernels off ("0"): <see cref="FusedKernelOptions.HedgehogMapEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_HEDGEHOG_MAP";

    /// <summary>Null when <see cref="Apply(Tensor)"/> would run the kernels on <paramref name="y"/>, else why not.</summary>
    public static string? UnavailableReason(Tensor y)
    {
        ArgumentNullException.ThrowIfNull(y);
        if (FusedLinearAttention.UnavailableReason(y.device) is { } reason) return reason;
        if (FusedLaunch.InType(y.dtype) < 0) return $"dtype {y.dtype} is not fp32, bf16 or fp16.";
        if (y.dim() == 0 || y.shape[^1] == 0 || y.numel() == 0) return "empty input.";
        return null;
    }

    /// <summary>φ(y) [..., 2F] from y [..., F]: the kernels when <see cref="FusedKernelOptions.HedgehogMapEnabled"/> and available, else <see cref="Reference"/>.</summary>
    public static Tensor Apply(Tensor y) => Apply(y, FusedKernelOptions.Current.HedgehogMapEnabled);

    /// <summary>As <see cref="Apply(Tensor)"/>, with the switch given (the verification runs the kernels regardless).</summary>
    internal static Tensor Apply(Tensor y, bool fused)
    {
        ArgumentNullException.ThrowIfNull(y);
        if (y.dim() == 0) throw new ArgumentException("Hedgehog's feature map needs at least one dimension (the features); got a scalar.", nameof(y));
        return fused && UnavailableReason(y) is null ? FusedHedgehogMapFunction.apply(y) : Reference(y);
    }

    /// <summary>The libtorch form: one softmax over a stacked [..., 2, F] view of (y, −y), flattened to [..., 2F].</summary>
    public static Tensor Reference(Tensor y)
    {
        using var scope = NewDisposeScope();
        return torch.stack(new[] { y, -y }, -2).softmax(-1).flatten(-2).MoveToOuterDisposeScope();
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(int Device, int InType), MapKernels> Kernels = new();

    /// <summary>The generic kernels (any F, one warp per row) and the vector kernels (see <see cref="VectorLanes"/>).</summary>
    internal readonly record struct MapKernels(IntPtr Forward, IntPtr Backward, IntPtr ForwardVector, IntPtr BackwardVector);

    /// <summary>The map's kernels for x's device and dtype (compiled on first use), with that device's context made current.</summary>
    internal static MapKernels Functions(Tensor x)
    {
        int device = x.device_index < 0 ? 0 : x.device_index, inType = FusedLaunch.InType(x.dtype);
        var info = FusedModuleCache.Device(device);
        FusedModuleCache.MakeCurrent(info.Context);
        lock (Gate)
        {
            if (Kernels.TryGetValue((device, inType), out var f)) return f;
            var cubin = FusedModuleCache.Compile($"sm_{info.Major}{info.Minor}", FusedModuleCache.Tiling.For(16, 16), inType, FusedFeatureMap.Identity,
                mma: false, verbose: false, out _, CudaSources.HedgehogMap);
            var module = FusedModuleCache.LoadModule(cubin);
            f = new MapKernels(FusedModuleCache.Function(module, "hedgehog_map_fwd", 0), FusedModuleCache.Function(module, "hedgehog_map_bwd", 0),
                FusedModuleCache.Function(module, "hedgehog_map_fwd_vec", 0), FusedModuleCache.Function(module, "hedgehog_map_bwd_vec", 0));
            return Kernels[(device, inType)] = f;
        }
    }

    /// <summary>Threads per block of both kernel forms.</summary>
    private const int Threads = 256;

    /// <summary>
    /// Lanes per row of the vector kernels for F features of <paramref name="elementSize"/> bytes: L = F / V with
    /// V = 16 / elementSize features per lane (one 16-byte load), when L is a power of two up to 32; else 0 (the
    /// generic kernels).
    /// </summary>
    internal static int VectorLanes(long features, int elementSize)
    {
        int perLane = 16 / elementSize;
        if (features <= 0 || features % perLane != 0) return 0;
        long lanes = features / perLane;
        return lanes <= 32 && (lanes & (lanes - 1)) == 0 ? (int)lanes : 0;
    }

    /// <summary>Blocks of the generic kernels: one warp per row, eight per 256-thread block.</summary>
    internal static long Blocks(long rows) => (rows + Threads / 32 - 1) / (Threads / 32);

    /// <summary>Blocks of the vector kernels: <paramref name="lanes"/> threads per row.</summary>
    internal static long VectorBlocks(long rows, int lanes) => (rows * lanes + Threads - 1) / Threads;

    /// <summary>Lanes of the vector kernels for these tensors, or 0 when one of them is not 16-byte aligned.</summary>
    private static int LanesFor(long features, params Tensor[] tensors)
    {
        int lanes = VectorLanes(features, (int)tensors[0].ElementSize);
        foreach (var t in tensors)
            if (FusedLaunch.Ptr(t) % 16 != 0) return 0;
        return lanes;
    }

    internal static Tensor Forward(Tensor y)
    {
        long f = y.shape[^1], rows = y.numel() / f;
        var shape = y.shape.ToArray();
        shape[^1] = 2 * f;
        var phi = torch.empty(shape, dtype: y.dtype, device: y.device);
        var kernels = Functions(y);
        int lanes = LanesFor(f, y, phi);
        if (lanes > 0)
            FusedModuleCache.Launch(kernels.ForwardVector, VectorBlocks(rows, lanes), 1, 0, FusedLaunch.Ptr(y), FusedLaunch.Ptr(phi), rows, lanes);
        else
            FusedModuleCache.Launch(kernels.Forward, Blocks(rows), 1, 0, FusedLaunch.Ptr(y), FusedLaunch.Ptr(phi), rows, f);
        return phi;
    }

    internal static Tensor Backward(Tensor phi, Tensor dphi)
    {
        long f = phi.shape[^1] / 2, rows = phi.numel() / (2 * f);
        var shape = phi.shape.ToArray();
        shape[^1] = f;
        var dy = torch.empty(shape, dtype: phi.dtype, device: phi.device);
        var kernels = Functions(phi);
        int lanes = LanesFor(f, phi, dphi, dy);
        if (lanes > 0)
            FusedModuleCache.Launch(kernels.BackwardVector, VectorBlocks(rows, lanes), 1, 0, FusedLaunch.Ptr(phi), FusedLaunch.Ptr(dphi), FusedLaunch.Ptr(dy), rows, lanes);
        else
            FusedModuleCache.Launch(kernels.Backward, Blocks(rows), 1, 0, FusedLaunch.Ptr(phi), FusedLaunch.Ptr(dphi), FusedLaunch.Ptr(dy), rows, f);
        return dy;
    }
}

/// <summary>Autograd wrapper of the map's kernels: forward saves φ (the softmax outputs), backward needs nothing else.</summary>
internal sealed class FusedHedgehogMapFunction : autograd.SingleTensorFunction<FusedHedgehogMapFunction>
{
    public override string Name => "FusedHedgehogMap";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var phi = FusedHedgehogMap.Forward(((Tensor)vars[0]).contiguous());
        ctx.save_for_backward(new List<Tensor> { phi.detach() });
        return phi;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused Hedgehog feature map", () =>
        {
            var phi = ctx.get_saved_variables()[0];
            var dy = FusedHedgehogMap.Backward(phi, grad_output.to(phi.dtype).contiguous());
            return AutogradWrappers.ReturnTensors(grad_output, dy);
        });
}

using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Hedgehog's feature map with its projection, φ = [softmax(x W_h), softmax(−x W_h)], as one tensor-core CUDA kernel
/// each way (hedgehog_projection.cuh), differentiable in x and W. Shapes: x [B, H, T, D],
/// w [H, D, F] → [B, H, T, 2F]. Elsewhere (CPU, fp32, other shapes, switched off) the projection is a libtorch matmul
/// followed by <see cref="FusedHedgehogMap"/>.
/// </summary>
public static class FusedHedgehogProjection
{
    /// <summary>Environment variable that switches the kernels off ("0"): <see cref="FusedKernelOptions.HedgehogProjectionEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_HEDGEHOG_PROJECTION";

    /// <summary>Largest head dim D and feature dim F the kernels take (their tiles live in shared memory and registers).</summary>
    public const int MaxDim = 128;

    /// <summary>Null when <see cref="Apply(Tensor, Tensor)"/> would run the kernels on x [B, H, T, D] and w [H, D, F] (w in x's dtype), else why not.</summary>
    public static string? UnavailableReason(Tensor x, Tensor w)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w);
        if (FusedLinearAttention.UnavailableReason(x.device) is { } reason) return reason;
        if (x.dtype is not (ScalarType.BFloat16 or ScalarType.Float16)) return $"dtype {x.dtype} is not bf16 or fp16 (the kernels use tensor cores).";
        if (w.dtype != x.dtype) return $"w is {w.dtype}, x is {x.dtype}.";
        if (x.dim() != 4 || w.dim() != 3 || w.shape[0] != x.shape[1] || w.shape[1] != x.shape[3])
            return $"x [{string.Join(", ", x.shape)}] and w [{string.Join(", ", w.shape)}] are not [B, H, T, D] and [H, D, F].";
        long d = w.shape[1], f = w.shape[2];
        if (d % 16 != 0 || f % 16 != 0 || d > MaxDim || f > MaxDim) return $"D = {d} and F = {f} must be multiples of 16 up to {MaxDim}.";
        if (x.numel() == 0) return "empty input.";
        if (x.shape[1] > 65535) return $"H = {x.shape[1]} exceeds the grid limit of 65535.";
        if (x.shape[0] * x.shape[2] >= 1L << 32) return $"B·T = {x.shape[0] * x.shape[2]} rows per head reach 2³² (the kernels index rows in 32 bits).";
        if (FusedModuleCache.Device(x.device_index < 0 ? 0 : x.device_index).Major < 8) return "the GPU is older than sm_80 (no bf16 tensor cores).";
        return null;
    }

    /// <summary>φ(x W) [B, H, T, 2F]: the kernels when <see cref="FusedKernelOptions.HedgehogProjectionEnabled"/> and available, else the matmul and <see cref="FusedHedgehogMap"/>.</summary>
    public static Tensor Apply(Tensor x, Tensor w) => Apply(x, w, FusedKernelOptions.Current.HedgehogProjectionEnabled);

    /// <summary>As <see cref="Apply(Tensor, Tensor)"/>, with the switch given (the verification runs the kernels regardless).</summary>
    internal static Tensor Apply(Tensor x, Tensor w, bool fused)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(w);
        if (x.dim() != 4 || w.dim() != 3 || w.shape[0] != x.shape[1] || w.shape[1] != x.shape[3])
            throw new ArgumentException(
                $"Hedgehog's feature map takes x [B, H, T, D] and its weight [H, D, F] with the same H and D; got x [{string.Join(", ", x.shape)}] " +
                $"and weight [{string.Join(", ", w.shape)}]. Build the map with the mixer's head count and head dim, and pass q or k split into heads.", nameof(x));
        using var scope = NewDisposeScope();
        var wx = w.to(x.dtype);
        var phi = fused && UnavailableReason(x, wx) is null
            ? FusedHedgehogProjectionFunction.apply(x, wx)
            : FusedHedgehogMap.Apply(x.matmul(wx.unsqueeze(0)));                  // [B, H, T, F] → [B, H, T, 2F]
        return phi.MoveToOuterDisposeScope();
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(int Device, int InType, int D, int F), (IntPtr Forward, IntPtr Backward, IntPtr WeightGradients)> Kernels = new();

    /// <summary>HFWD_MINB and HBWD_MINB as -D defines for <paramref name="blocks"/>, or none (the source's defaults).</summary>
    internal static string[] BlocksDefines((int Forward, int Backward)? blocks)
        => blocks is { } b ? [$"HFWD_MINB={b.Forward}", $"HBWD_MINB={b.Backward}"] : [];

    /// <summary>Shared-memory bytes of the forward kernel (must match the CUDA source): Wᵀ, two x tiles, the φ tile, the softmax exchange.</summary>
    internal static int ForwardBytes(int d, int f) => 2 * (f * (d + 8) + 2 * Tile * (d + 8) + Tile * (2 * f + 8)) + 4 * (2 * Tile * 4);

    /// <summary>Shared-memory bytes of the backward kernel (must match hh_bwd): Wᵀ, two x tiles, two dφ tiles (2F wide), dy, the two exchanges.</summary>
    internal static int BackwardBytes(int d, int f)
        => 2 * (f * (d + 8) + 2 * Tile * (d + 8) + 2 * Tile * (2 * f + 8) + Tile * (f + 8)) + 4 * (2 * Tile * 4 + 2 * Tile * 2);

    /// <summary>Shared-memory bytes of the weight-gradient kernel (must match hh_dw): three x tiles and three dy tiles (HDW_STAGES).</summary>
    internal static int WeightGradientBytes(int d, int f) => 2 * 3 * Tile * ((d + 8) + (f + 8));

    /// <summary>Rows per tile (MTT in the source).</summary>
    private const int Tile = 64;

    /// <summary>
    /// Blocks per head (grid x): as many as fit in one wave of the GPU's resident blocks over the H heads (rounded down: a
    /// block past the wave would run alone afterwards, with as much work as the others, nearly doubling the time), at
    /// least one, at most one per tile. Each block strides over its head's tiles, so W_h is loaded and dW_h flushed once
    /// per block.
    /// </summary>
    internal static int BlocksPerHead(long rowsPerHead, long heads, long residentBlocks)
    {
        long tiles = (rowsPerHead + Tile - 1) / Tile;
        long perHead = residentBlocks / Math.Max(1, heads);
        return (int)Math.Max(1, Math.Min(tiles, perHead));
    }

    private static (IntPtr Forward, IntPtr Backward, IntPtr WeightGradients) Functions(Tensor x, int d, int f)
    {
        int device = x.device_index < 0 ? 0 : x.device_index, inType = FusedLaunch.InType(x.dtype);
        var info = FusedModuleCache.Device(device);
        FusedModuleCache.MakeCurrent(info.Context);
        lock (Gate)
        {
            if (Kernels.TryGetValue((device, inType, d, f), out var k)) return k;
            var cubin = FusedModuleCache.Compile($"sm_{info.Major}{info.Minor}", FusedModuleCache.Tiling.For(d, f), inType, FusedFeatureMap.Identity,
                mma: true, verbose: false, out _, CudaSources.HedgehogProjection, BlocksDefines(FusedKernelOptions.Current.HedgehogProjectionBlocksPerSm));
            var module = FusedModuleCache.LoadModule(cubin);
            k = (FusedModuleCache.Function(module, "hedgehog_proj_fwd", ForwardBytes(d, f)),
                FusedModuleCache.Function(module, "hedgehog_proj_bwd", BackwardBytes(d, f)),
                FusedModuleCache.Function(module, "hedgehog_dw_bwd", WeightGradientBytes(d, f)));
            return Kernels[(device, inType, d, f)] = k;
        }
    }

    /// <summary>
    /// M = ⌊(2⁶⁴ − 1) / T⌋ + 1, so that ⌊n / T⌋ = ⌊M·n / 2⁶⁴⌋ for every n &lt; 2³² (Lemire, Kaser and Kurz 2019); 0 for T = 1
    /// (the kernels take b = n then). The kernels split row indices n = b·T + t with it instead of a 64-bit division.
    /// </summary>
    internal static ulong DivisionMultiplier(long t) => t <= 1 ? 0UL : ulong.MaxValue / (ulong)t + 1;

    private static int Grid(Tensor x, IntPtr function, int sharedBytes, long rowsPerHead, long heads)
    {
        var info = FusedModuleCache.Device(x.device_index < 0 ? 0 : x.device_index);
        return BlocksPerHead(rowsPerHead, heads, (long)info.SmCount * FusedModuleCache.BlocksPerSm(function, sharedBytes));
    }

    /// <summary>φ [B, H, T, 2F] from x [B, H, T, D] and w [H, D, F] (contiguous, x's dtype).</summary>
    internal static Tensor Forward(Tensor x, Tensor w)
    {
        long b = x.shape[0], h = x.shape[1], t = x.shape[2];
        int d = (int)w.shape[1], f = (int)w.shape[2];
        (x, w) = (FusedLaunch.Aligned(x), FusedLaunch.Aligned(w));
        var phi = torch.empty(new[] { b, h, t, 2L * f }, dtype: x.dtype, device: x.device);
        var (forward, _, _) = Functions(x, d, f);
        int bytes = ForwardBytes(d, f), grid = Grid(x, forward, bytes, b * t, h);
        FusedModuleCache.Launch(forward, grid, h, bytes, FusedLaunch.Ptr(x), FusedLaunch.Ptr(w), FusedLaunch.Ptr(phi), t, h, b * t, grid,
            (long)DivisionMultiplier(t));
        return phi;
    }

    /// <summary>dx [B, H, T, D] (x's dtype) and dW [H, D, F] (fp32) from x, w and dφ [B, H, T, 2F] (contiguous, x's dtype).</summary>
    internal static (Tensor dx, Tensor dw) Backward(Tensor x, Tensor w, Tensor dphi)
    {
        long b = x.shape[0], h = x.shape[1], t = x.shape[2];
        int d = (int)w.shape[1], f = (int)w.shape[2];
        (x, w, dphi) = (FusedLaunch.Aligned(x), FusedLaunch.Aligned(w), FusedLaunch.Aligned(dphi));
        var dx = torch.empty_like(x);
        var dw = torch.zeros(new[] { h, (long)d, f }, dtype: ScalarType.Float32, device: x.device);
        var (_, backward, _) = Functions(x, d, f);
        int bytes = BackwardBytes(d, f), grid = Grid(x, backward, bytes, b * t, h);
        FusedModuleCache.Launch(backward, grid, h, bytes, FusedLaunch.Ptr(x), FusedLaunch.Ptr(w), FusedLaunch.Ptr(dphi), FusedLaunch.Ptr(dx),
            FusedLaunch.Ptr(dw), t, h, b * t, grid, (long)DivisionMultiplier(t));
        return (dx, dw);
    }

    /// <summary>
    /// Adds dW = Σ xᵀ dy [H, D, F] of two projections, in one launch, into dw [2, H, D, F] (fp32, zeros or sums to add to),
    /// from x [B, H, T, D] and the gradient of each projection's output, dy [B, H, T, F] (x's dtype): for
    /// <see cref="FusedHedgehogAttention"/>, whose kernels take the softmaxes' backward and dx = dy Wᵀ themselves. dy1
    /// null: the first projection alone (its attention kernel reduced the second's itself).
    /// </summary>
    internal static void WeightGradients(Tensor x0, Tensor dy0, Tensor x1, Tensor? dy1, Tensor dw)
    {
        long b = x0.shape[0], h = x0.shape[1], t = x0.shape[2];
        int d = (int)x0.shape[3], f = (int)dy0.shape[3];
        (x0, dy0) = (FusedLaunch.Aligned(x0), FusedLaunch.Aligned(dy0));
        if (dy1 is not null) (x1, dy1) = (FusedLaunch.Aligned(x1), FusedLaunch.Aligned(dy1));   // else unread
        long maps = dy1 is null ? 1 : 2;
        var (_, _, weights) = Functions(x0, d, f);
        int bytes = WeightGradientBytes(d, f), grid = Grid(x0, weights, bytes, b * t, maps * h);
        FusedModuleCache.Launch(weights, grid, maps * h, bytes, FusedLaunch.Ptr(x0), FusedLaunch.Ptr(dy0), FusedLaunch.Ptr(dw[0]),
            FusedLaunch.Ptr(x1), FusedLaunch.Ptr(dy1), FusedLaunch.Ptr(dw[1]), t, h, b * t, grid, (long)DivisionMultiplier(t));
    }
}

/// <summary>Autograd wrapper of the projection kernels: forward saves x and w (backward recomputes y = xW), backward returns dx and dW.</summary>
internal sealed class FusedHedgehogProjectionFunction : autograd.SingleTensorFunction<FusedHedgehogProjectionFunction>
{
    public override string Name => "FusedHedgehogProjection";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var x = ((Tensor)vars[0]).contiguous();
        var w = ((Tensor)vars[1]).contiguous();
        var phi = FusedHedgehogProjection.Forward(x, w);
        ctx.save_for_backward(new List<Tensor> { x, w });
        return phi;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused Hedgehog projection", () =>
        {
            var saved = ctx.get_saved_variables();
            var (x, w) = (saved[0], saved[1]);
            var (dx, dw) = FusedHedgehogProjection.Backward(x, w, grad_output.to(x.dtype).contiguous());
            return AutogradWrappers.ReturnTensors(grad_output, dx, dw.to(w.dtype));
        });
}

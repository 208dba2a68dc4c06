using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Hedgehog's bidirectional attention with φ = [softmax(x W_h), softmax(−x W_h)] computed inside the tensor-core
/// attention kernels: each kernel's tile loader projects the x tile with W_h by MMA and takes both softmaxes in
/// registers, so φ(q) and φ(k) (2F wide, twice x's width at F = D) never go to memory, forward or backward. Same
/// result as <see cref="FusedLinearAttention.Bidirectional(Tensor, Tensor, Tensor, Tensor?, FusedFeatureMap, double)"/>
/// on <see cref="FusedHedgehogProjection.Apply(Tensor, Tensor)"/>'s features with the identity map. The backward
/// kernels recompute φ, take the softmaxes' backward along each warp's rows and return dx = dy Wᵀ with dy = ∂L/∂(xW)
/// (F wide, half of dφ's width); for bf16 <c>mma_bwd_kv</c> also reduces the key map's dW = xᵀdy, and one projection
/// kernel reduces the rest (the query map's; for fp16 both).
/// <para>Shapes: xq, xk [B, H, T, HX] (q and k split into heads, before the map), v [B, H, T, Dv], wq, wk [H, HX, F],
/// keyPaddingMask [B, T] bool (true = real token) or null; result [B, H, T, Dv] in x's dtype, zero at padded rows.</para>
/// </summary>
public static class FusedHedgehogAttention
{
    /// <summary>Environment variable that switches these kernels off ("0"): <see cref="FusedKernelOptions.HedgehogAttentionEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_HEDGEHOG_ATTENTION";

    /// <summary>
    /// Blocks per SM the kernels are compiled for, or null for the default (<see cref="BlocksPerSmFor"/>); read at each
    /// forward call, the backward follows its forward. For benchmarks.
    /// </summary>
    internal static int? CompiledBlocksPerSm { get; set; }

    /// <summary>
    /// Sequence length from which the default build is the one compiled for one block per SM: at 2K tokens and more per
    /// sequence it measured faster than two blocks per SM, below that slower (docs/benchmarks/kernels.md, Hedgehog's
    /// "…, 1 block/SM" case).
    /// </summary>
    internal const long OneBlockPerSmFrom = 2048;

    /// <summary>
    /// Blocks per SM for a forward call at sequence length t: <see cref="CompiledBlocksPerSm"/> when set, else one from
    /// <see cref="OneBlockPerSmFrom"/> tokens on, else null (the source's default: two where x and v are at most 64 wide,
    /// one above).
    /// </summary>
    internal static int? BlocksPerSmFor(long t) => CompiledBlocksPerSm ?? (t >= OneBlockPerSmFrom ? 1 : null);

    /// <summary>Largest feature dim F: φ is 2F wide and the kernels' feature width is at most <see cref="FusedLinearAttention.MaxHeadDim"/>.</summary>
    public const int MaxFeatureDim = FusedLinearAttention.MaxHeadDim / 2;

    /// <summary>Null when <see cref="Bidirectional"/> would run the kernels on these inputs (the weights are used in x's dtype), else why not.</summary>
    public static string? UnavailableReason(Tensor xq, Tensor xk, Tensor v, Tensor wq, Tensor wk, Tensor? keyPaddingMask)
    {
        Check(xq, xk, v, wq, wk, keyPaddingMask, LinearAttentionKernels.DefaultEps);
        if (!FusedKernelOptions.Current.HedgehogAttentionEnabled) return $"switched off ({EnableVariable}=0 or FusedKernelOptions.Current.HedgehogAttentionEnabled = false).";
        if (!FusedKernelOptions.Current.UseTensorCores) return $"the tensor-core kernels are switched off ({FusedLinearAttention.TensorCoreVariable}=0).";
        if (FusedLinearAttention.FusedReason(xq, xk, v, keyPaddingMask) is { } reason) return reason;
        if (xq.dtype is not (ScalarType.BFloat16 or ScalarType.Float16)) return $"dtype {xq.dtype} is not bf16 or fp16 (the kernels use tensor cores).";
        long hx = xq.shape[3], f = wq.shape[2], dv = v.shape[3];
        if (hx % 16 != 0 || f % 16 != 0 || dv % 16 != 0) return $"HX = {hx}, F = {f} and Dv = {dv} must be multiples of 16.";
        if (f > MaxFeatureDim) return $"F = {f} is above {MaxFeatureDim} (φ would be wider than {FusedLinearAttention.MaxHeadDim}).";
        if (xq.shape[1] > 65535) return $"H = {xq.shape[1]} exceeds the grid limit of 65535.";
        if (xq.shape[0] * xq.shape[2] >= 1L << 32) return $"B·T = {xq.shape[0] * xq.shape[2]} rows per head reach 2³².";
        if (FusedModuleCache.Device(xq.device_index < 0 ? 0 : xq.device_index).Major < 8) return "the GPU is older than sm_80 (no bf16 tensor cores).";
        return null;
    }

    /// <summary>
    /// o_i = Σ_j a_ij v_j / (Σ_j a_ij + eps·n) with a_ij = φq(xq_i)·φk(xk_j) over real keys j, n = real tokens of the row;
    /// zero rows at padded positions. Differentiable in xq, xk, v, wq and wk. The kernels when they apply (see
    /// <see cref="UnavailableReason"/>), else the projection kernels or ops and <see cref="FusedLinearAttention"/>.
    /// </summary>
    /// <param name="xq">Queries before the map [B, H, T, HX].</param>
    /// <param name="xk">Keys before the map [B, H, T, HX].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="wq">Query map weight [H, HX, F] (any float dtype; used in x's).</param>
    /// <param name="wk">Key map weight [H, HX, F] (the query's when the maps are tied).</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="eps">Normalizer epsilon (per token).</param>
    public static Tensor Bidirectional(Tensor xq, Tensor xk, Tensor v, Tensor wq, Tensor wk, Tensor? keyPaddingMask,
        double eps = LinearAttentionKernels.DefaultEps)
    {
        Check(xq, xk, v, wq, wk, keyPaddingMask, eps);
        using var scope = NewDisposeScope();
        var (wqx, wkx) = (wq.to(xq.dtype), wk.to(xq.dtype));
        var o = UnavailableReason(xq, xk, v, wqx, wkx, keyPaddingMask) is null
            ? FusedHedgehogAttentionFunction.apply(xq, xk, v, wqx, wkx, new AutogradArguments((keyPaddingMask, eps)))
            : FusedLinearAttention.Bidirectional(FusedHedgehogProjection.Apply(xq, wq), FusedHedgehogProjection.Apply(xk, wk), v,
                keyPaddingMask, FusedFeatureMap.Identity, eps);
        return o.MoveToOuterDisposeScope();
    }

    // The kernels index x, v and the mask from these shapes, so every disagreement is refused before a launch.
    private static void Check(Tensor xq, Tensor xk, Tensor v, Tensor wq, Tensor wk, Tensor? keyPaddingMask, double eps)
    {
        ArgumentNullException.ThrowIfNull(xq);
        ArgumentNullException.ThrowIfNull(xk);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(wq);
        ArgumentNullException.ThrowIfNull(wk);
        Heads.CheckQkv(xq, xk, v, keyPaddingMask);
        if (!xq.shape.SequenceEqual(xk.shape))
            throw new ArgumentException($"xq and xk must have the same [B, H, T, HX] shape for bidirectional attention; got xq {Heads.Shape(xq)}, xk {Heads.Shape(xk)}.");
        if (xq.dtype != xk.dtype || xq.dtype != v.dtype)
            throw new ArgumentException($"xq, xk and v must share one dtype; got {xq.dtype}, {xk.dtype}, {v.dtype}.");
        if (!(eps > 0) || double.IsInfinity(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be a positive finite number (it keeps the normalizer away from zero).");
        if (xq.dim() != 4 || wq.dim() != 3 || !wq.shape.SequenceEqual(wk.shape) || wq.shape[0] != xq.shape[1] || wq.shape[1] != xq.shape[3])
            throw new ArgumentException(
                $"Hedgehog's attention takes x [B, H, T, HX] and map weights [H, HX, F] of one shape; got xq {Heads.Shape(xq)}, " +
                $"wq {Heads.Shape(wq)}, wk {Heads.Shape(wk)}. Build the maps with the mixer's head count and head dim, and pass q and k split into heads.");
    }
}

/// <summary>
/// Autograd wrapper of Hedgehog's attention kernels: forward saves x, the weights, the fp32 state, eps·n and the
/// output; backward runs the two backward kernels (which recompute φ and return dx, and dy = ∂L/∂(xW) or, for the
/// key map in bf16, its dW), then one launch of the projection's weight-gradient kernel for the rest of dW.
/// </summary>
internal sealed class FusedHedgehogAttentionFunction : autograd.SingleTensorFunction<FusedHedgehogAttentionFunction>
{
    public override string Name => "FusedHedgehogAttention";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var (mask, eps) = ((Tensor?, double))((AutogradArguments)vars[5]).Value!;
        var xq = ((Tensor)vars[0]).contiguous();
        var xk = ((Tensor)vars[1]).contiguous();
        var v = ((Tensor)vars[2]).contiguous();
        var wq = ((Tensor)vars[3]).contiguous();
        var wk = ((Tensor)vars[4]).contiguous();
        var m = mask?.contiguous();
        var blocks = FusedHedgehogAttention.BlocksPerSmFor(xq.shape[2]);
        var (o, s, z, epsn, _) = FusedLaunch.Forward(xq, xk, v, m, null, FusedFeatureMap.Identity, tensorCores: true,
            hh: new HedgehogWeights(wq, wk, blocks), eps: eps);
        ctx.save_for_backward(new List<Tensor> { xq, xk, v, wq, wk, s, z, epsn, o.detach(), m! });
        ctx.save_data("blocks", blocks ?? 0);   // 0: the default
        return o;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused Hedgehog attention", () =>
        {
            var saved = ctx.get_saved_variables();
            var (xq, xk, v, wq, wk) = (saved[0], saved[1], saved[2], saved[3], saved[4]);
            var (s, z, epsn, o) = (saved[5], saved[6], saved[7], saved[8]);
            var mask = saved.Count > 9 ? saved[9] : null;
            var dout = grad_output.to(xq.dtype).contiguous();
            // The kernels return dv, the gradients of y = xW on each side (the softmaxes' backward done in their warp
            // passes) and dx = dy Wᵀ; dW = xᵀdy, a reduction over tokens, is one more launch for the query map, and for
            // the key map too unless mma_bwd_kv adds it into the sums itself (bf16).
            var (dxq, dxk) = (torch.empty_like(xq), torch.empty_like(xk));
            // The dW sums of both maps: mma_bwd_q zeroes them, so they start unset.
            var dw = torch.empty(new[] { 2, wq.shape[0], wq.shape[1], wq.shape[2] }, dtype: ScalarType.Float32, device: xq.device);
            var (dyq, dyk, dv) = FusedLaunch.Backward(xq, xk, v, mask, epsn, s, z, o, dout, FusedFeatureMap.Identity, tensorCores: true,
                hh: new HedgehogWeights(wq, wk, (int)ctx.get_data("blocks") is > 0 and var n ? n : null), hhDx: (dxq, dxk, dw));
            FusedHedgehogProjection.WeightGradients(xq, dyq, xk, dyk, dw);
            // wq and wk are in x's dtype here (Bidirectional converts them before the call): one conversion for both.
            var both = dw.to(wq.dtype);
            return AutogradWrappers.Return(grad_output, dxq, dxk, dv, both[0], both[1]);
        });
}

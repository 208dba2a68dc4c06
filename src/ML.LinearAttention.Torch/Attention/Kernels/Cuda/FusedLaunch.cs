using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>Which of the four fused kernels a launch runs (all by default; the profiler times them one by one).</summary>
[Flags]
internal enum FusedKernels
{
    State = 1,
    Out = 2,
    BackwardQ = 4,
    BackwardKv = 8,
    All = State | Out | BackwardQ | BackwardKv,
    None = 0,
}

/// <summary>
/// Hedgehog's projection weights [H, HX, F] (q's dtype, contiguous) when the tensor-core kernels compute φ from x
/// themselves (<see cref="FusedModuleCache.GetHedgehog"/>): q and k are then x [B, H, T, HX], and the state and the
/// gradients of q and k are φ-wide (2F).
/// </summary>
/// <param name="Query">The query map's weight.</param>
/// <param name="Key">The key map's weight.</param>
/// <param name="BlocksPerSm">Blocks per SM the kernels are compiled for; null: the default (benchmarks compare others).</param>
internal sealed record HedgehogWeights(Tensor Query, Tensor Key, int? BlocksPerSm = null);

/// <summary>Allocates buffers and launches the four fused kernels (inputs already checked and contiguous).</summary>
internal static class FusedLaunch
{
    /// <summary>The source's IN_T code of a dtype: 0 fp32, 1 bf16, 2 fp16, −1 unsupported.</summary>
    public static int InType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => 0,
        ScalarType.BFloat16 => 1,
        ScalarType.Float16 => 2,
        _ => -1,
    };

    private static FusedModule Module(Tensor q, long dv, FusedFeatureMap map)
    {
        int device = q.device_index < 0 ? 0 : q.device_index;
        var module = FusedModuleCache.Get(device, (int)q.shape[3], (int)dv, InType(q.dtype), map);
        FusedModuleCache.MakeCurrent(module);
        return module;
    }

    private static FusedModule HedgehogModule(Tensor x, long dv, HedgehogWeights hh)
    {
        int device = x.device_index < 0 ? 0 : x.device_index;
        var module = FusedModuleCache.GetHedgehog(device, (int)x.shape[3], (int)hh.Key.shape[2], (int)dv, InType(x.dtype), hh.BlocksPerSm);
        FusedModuleCache.MakeCurrent(module);
        return module;
    }

    /// <summary>The kernel arguments, with the Hedgehog weight appended when there is one (the kernels' last parameter).</summary>
    private static long[] Args(Tensor? weight, params long[] args) => weight is null ? args : [.. args, Ptr(weight)];

    /// <summary>
    /// A backward kernel's arguments: Hedgehog's build also takes the map weight, its dx buffer and the fp32 dW sums of
    /// both maps [2, H, HX, F] (zeroed by <c>mma_bwd_q</c>, added into by <c>mma_bwd_kv</c> where
    /// <see cref="FusedModule.HedgehogKeyWeightsInKernel"/>) last.
    /// </summary>
    private static long[] Args(Tensor? weight, Tensor? dx, Tensor? dw, params long[] args)
        => weight is null ? args : [.. args, Ptr(weight), Ptr(dx!), Ptr(dw)];

    /// <summary>Query tiles per block: enough blocks to fill the GPU several times over, few enough to keep atomics rare.</summary>
    private static (int tilesPerBlock, long blocks) Split(FusedModule module, long t, long bh, int tt)
    {
        long tiles = (t + tt - 1) / tt;
        long target = Math.Max(1, module.SmCount * 8L / Math.Max(1, bh));
        int tpb = (int)Math.Max(1, Math.Min(tiles, (tiles + target - 1) / target));
        return (tpb, (tiles + tpb - 1) / tpb);
    }

    /// <summary>
    /// Tiles per block of a tensor-core kernel: the split with the shortest estimated makespan, waves (blocks over the
    /// GPU's resident <paramref name="slots"/>, from the kernel's occupancy) times the tiles of a block plus one tile's
    /// worth of per-block work (loading the state, flushing atomics); ties go to fewer blocks (fewer atomics).
    /// </summary>
    internal static (int tilesPerBlock, long blocks) MmaSplit(long tiles, long bh, long slots)
    {
        (int tpb, long blocks) best = (1, tiles);
        double bestCost = double.MaxValue;
        for (long tpb = tiles; tpb >= 1; tpb--)
        {
            long perHead = (tiles + tpb - 1) / tpb;
            long waves = (perHead * bh + slots - 1) / slots;
            double cost = waves * (tpb + 1.0);
            if (cost < bestCost) (bestCost, best) = (cost, ((int)tpb, perHead));
        }
        return best;
    }

    // The search is linear in the tiles per head; a training loop sees few distinct shapes, so each is searched once.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(long, long, long), (int, long)> Splits = new();

    private static (int tilesPerBlock, long blocks) MmaSplit(FusedModule module, IntPtr function, int sharedBytes, long t, long bh)
    {
        int tt = FusedModuleCache.Tiling.MmaTT;
        var key = ((t + tt - 1) / tt, bh, (long)module.SmCount * FusedModuleCache.BlocksPerSm(function, sharedBytes));
        return Splits.GetOrAdd(key, k => MmaSplit(k.Item1, k.Item2, k.Item3));
    }

    /// <summary>The device address of x's data (0 for null), as a kernel argument.</summary>
    internal static long Ptr(Tensor? x) => x is null ? 0 : NativeTensorAccess.DataPointer(x).ToInt64();

    /// <summary>x, or a fresh copy when its data is not 16-byte aligned (the tensor-core kernels load 8 halves at a time).</summary>
    internal static Tensor Aligned(Tensor x) => (Ptr(x) & 15) == 0 ? x : x.clone();

    /// <summary>
    /// fp32 per-head sums [B, H, D, Dv] and [B, H, D] (S and z, or dS and dz): unset where the kernel stores them outright
    /// (one block per head, put_sum), else zeros for its atomics.
    /// </summary>
    private static (Tensor sums, Tensor rowSums) StateSums(long b, long h, long d, long dv, Device device, bool stored)
    {
        Tensor Make(long[] shape) => stored
            ? torch.empty(shape, dtype: ScalarType.Float32, device: device)
            : torch.zeros(shape, dtype: ScalarType.Float32, device: device);
        return (Make(new[] { b, h, d, dv }), Make(new[] { b, h, d }));
    }

    /// <summary>eps·max(1, real tokens) per batch row, fp32 [B].</summary>
    public static Tensor EpsN(Tensor? mask, long b, long t, double eps, Device device) => mask is null
        ? torch.full(new[] { b }, eps * t, dtype: ScalarType.Float32, device: device)
        : mask.sum(1, type: ScalarType.Float32).clamp_min(1) * eps;

    /// <summary>
    /// Forward: returns o [B, H, T, Dv], the fp32 state S [B, H, D, Dv] and key sum z [B, H, D], eps·n per batch row
    /// [B] (<paramref name="epsn"/>, or when that is null counted for <paramref name="eps"/>: by Hedgehog's whole-head
    /// kernel where it runs, else <see cref="EpsN"/>), and whether the tensor-core kernels ran (asked for by
    /// <paramref name="tensorCores"/> and compiled for this module).
    /// </summary>
    public static (Tensor o, Tensor s, Tensor z, Tensor epsn, bool mma) Forward(Tensor q, Tensor k, Tensor v, Tensor? mask,
        Tensor? epsn, FusedFeatureMap map, bool tensorCores, FusedKernels run = FusedKernels.All, HedgehogWeights? hh = null,
        double eps = LinearAttentionKernels.DefaultEps)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dv = v.shape[3];
        long d = hh is null ? q.shape[3] : 2 * hh.Key.shape[2];
        var module = hh is null ? Module(q, dv, map) : HedgehogModule(q, dv, hh);
        // The tensor-core kernels store S and z outright when each head takes one block (put_sum): no zeros to write.
        (Tensor s, Tensor z) Sums(bool stored) => StateSums(b, h, d, dv, q.device, stored);
        var o = torch.empty(new[] { b, h, t, dv }, dtype: q.dtype, device: q.device);
        var tiles = module.Tiles;
        if (hh is not null && !(tensorCores && module.Mma is not null))
            throw new InvalidOperationException("Hedgehog's attention kernels exist only as tensor-core kernels.");
        if (tensorCores && module.Mma is { } mma)
        {
            (q, k, v) = (Aligned(q), Aligned(k), Aligned(v));
            int extra = module.HedgehogBytes;
            var (tpb1, blocks1) = MmaSplit(module, mma.FwdState, tiles.MmaStateBytes + extra, t, b * h);
            // Hedgehog, when the key pass would take one block per head (T = 512 and 2K at 32K tokens per batch): both
            // passes in one kernel, with no S round trip or atomics between them.
            if (hh is not null && run == FusedKernels.All && mma.FwdHead != IntPtr.Zero && blocks1 == 1)
            {
                var (sh, zh) = Sums(stored: true);
                // Without a given epsn the kernel counts it (eps > 0) into a fresh buffer: one launch fewer.
                float countEps = epsn is null ? (float)eps : 0f;
                epsn ??= torch.empty(new[] { b }, dtype: ScalarType.Float32, device: q.device);
                FusedModuleCache.Launch(mma.FwdHead, 1, b * h, module.HedgehogHeadBytes, Ptr(q), Ptr(k), Ptr(v), Ptr(mask),
                    Ptr(epsn), BitConverter.SingleToInt32Bits(countEps), t, h, Ptr(sh), Ptr(zh), Ptr(o), Ptr(hh.Key), Ptr(hh.Query));
                return (o, sh, zh, epsn, true);
            }
            epsn ??= EpsN(mask, b, t, eps, q.device);
            var (s, z) = Sums(stored: blocks1 == 1 && run.HasFlag(FusedKernels.State));
            if (run.HasFlag(FusedKernels.State))
            {
                int bytes = tiles.MmaStateBytes + extra;
                FusedModuleCache.Launch(mma.FwdState, blocks1, b * h, bytes,
                    Args(hh?.Key, Ptr(k), Ptr(v), Ptr(mask), t, h, tpb1, Ptr(s), Ptr(z)));
            }
            if (run.HasFlag(FusedKernels.Out))
            {
                int bytes = tiles.MmaOutBytes + extra;
                var (tpb2, blocks2) = MmaSplit(module, mma.FwdOut, bytes, t, b * h);
                FusedModuleCache.Launch(mma.FwdOut, blocks2, b * h, bytes,
                    Args(hh?.Query, Ptr(q), Ptr(s), Ptr(z), Ptr(mask), Ptr(epsn), t, h, tpb2, Ptr(o)));
            }
            return (o, s, z, epsn, true);
        }
        epsn ??= EpsN(mask, b, t, eps, q.device);
        var (sc, zc) = Sums(stored: false);
        var (tpb, blocks) = Split(module, t, b * h, tiles.TT);
        if (run.HasFlag(FusedKernels.State))
            FusedModuleCache.Launch(module.FwdState, blocks, b * h, tiles.StateBytes,
                Ptr(k), Ptr(v), Ptr(mask), t, h, tpb, Ptr(sc), Ptr(zc));
        if (run.HasFlag(FusedKernels.Out))
            FusedModuleCache.Launch(module.FwdOut, blocks, b * h, tiles.OutBytes,
                Ptr(q), Ptr(sc), Ptr(zc), Ptr(mask), Ptr(epsn), t, h, tpb, Ptr(o));
        return (o, sc, zc, epsn, false);
    }

    /// <summary>
    /// Backward: dq, dk, dv from the upstream gradient dO and the forward output o [B, H, T, Dv] (contiguous, q's dtype).
    /// With Hedgehog's weights, dq and dk are the gradients of the projections' outputs y = xW [B, H, T, F], and the
    /// kernels also write dx = dy Wᵀ into hhDx (dxq, dxk [B, H, T, HX], q's dtype, contiguous). mma_bwd_q zeroes hhDx's
    /// Weights (fp32 [2, H, HX, F], contiguous, unset: the dW sums of the query and key maps); where the module's
    /// <c>mma_bwd_kv</c> reduces the key map's dW itself (<see cref="FusedModule.HedgehogKeyWeightsInKernel"/>) it adds
    /// it into Weights[1] and dk comes back null.
    /// </summary>
    public static (Tensor dq, Tensor? dk, Tensor dv) Backward(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor epsn,
        Tensor s, Tensor z, Tensor o, Tensor dout, FusedFeatureMap map, bool tensorCores, FusedKernels run = FusedKernels.All,
        HedgehogWeights? hh = null, (Tensor Query, Tensor Key, Tensor Weights)? hhDx = null)
    {
        if (hh is not null && hhDx is null)
            throw new ArgumentNullException(nameof(hhDx), "Hedgehog's backward kernels write dx: pass the dxq and dxk buffers.");
        if (hh is not null && run != FusedKernels.All)
            throw new ArgumentException("Hedgehog's backward kernels run together (mma_bwd_q zeroes the dW sums that mma_bwd_kv adds into): pass FusedKernels.All.", nameof(run));
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dvDim = v.shape[3];
        long d = hh is null ? q.shape[3] : 2 * hh.Key.shape[2];
        var module = hh is null ? Module(q, dvDim, map) : HedgehogModule(q, dvDim, hh);
        (Tensor ds, Tensor dz) Sums(bool stored) => StateSums(b, h, d, dvDim, q.device, stored);
        // With Hedgehog's weights these are the gradients of the projections' outputs y = xW (F wide), which
        // FusedHedgehogAttention turns into dx and dW.
        var dq = hh is null ? torch.empty_like(q) : torch.empty(new[] { b, h, t, d / 2 }, dtype: q.dtype, device: q.device);
        bool keyWeights = hh is not null && module.HedgehogKeyWeightsInKernel;
        var dk = hh is null ? torch.empty_like(k) : keyWeights ? null : torch.empty(new[] { b, h, t, d / 2 }, dtype: k.dtype, device: k.device);
        var dv = torch.empty_like(v);
        var tiles = module.Tiles;
        if (hh is not null && !(tensorCores && module.Mma is not null))
            throw new InvalidOperationException("Hedgehog's attention kernels exist only as tensor-core kernels.");
        if (tensorCores && module.Mma is { } mma)
        {
            (q, k, v, o, dout) = (Aligned(q), Aligned(k), Aligned(v), Aligned(o), Aligned(dout));
            int qBytes = hh is null ? tiles.MmaBwdQBytes : module.HedgehogQBytes;
            var (tpb1, blocks1) = MmaSplit(module, mma.BwdQ, qBytes, t, b * h);
            // mma_bwd_q stores dS and dz outright when each head takes one block (put_sum).
            var (ds, dz) = Sums(stored: blocks1 == 1 && run.HasFlag(FusedKernels.BackwardQ));
            if (run.HasFlag(FusedKernels.BackwardQ))
            {
                FusedModuleCache.Launch(mma.BwdQ, blocks1, b * h, qBytes,
                    Args(hh?.Query, hhDx?.Query, hhDx?.Weights, Ptr(q), Ptr(dout), Ptr(o), Ptr(s), Ptr(z), Ptr(mask), Ptr(epsn), t, h, tpb1, Ptr(dq), Ptr(ds), Ptr(dz)));
            }
            if (run.HasFlag(FusedKernels.BackwardKv))
            {
                int bytes = hh is null ? tiles.MmaBwdKvBytes : module.HedgehogKvBytes;
                var (tpb2, blocks2) = MmaSplit(module, mma.BwdKv, bytes, t, b * h);
                FusedModuleCache.Launch(mma.BwdKv, blocks2, b * h, bytes,
                    Args(hh?.Key, hhDx?.Key, hhDx?.Weights, Ptr(k), Ptr(v), Ptr(ds), Ptr(dz), Ptr(mask), t, h, tpb2, Ptr(dk), Ptr(dv)));
            }
            return (dq, dk, dv);
        }
        var (dsc, dzc) = Sums(stored: false);
        var (tpb, blocks) = Split(module, t, b * h, tiles.TT);
        if (run.HasFlag(FusedKernels.BackwardQ))
            FusedModuleCache.Launch(module.BwdQ, blocks, b * h, module.Tiles.BwdQBytes,
                Ptr(q), Ptr(dout), Ptr(o), Ptr(s), Ptr(z), Ptr(mask), Ptr(epsn), t, h, tpb, Ptr(dq), Ptr(dsc), Ptr(dzc));
        if (run.HasFlag(FusedKernels.BackwardKv))
            FusedModuleCache.Launch(module.BwdKv, blocks, b * h, module.Tiles.BwdKvBytes,
                Ptr(k), Ptr(v), Ptr(dsc), Ptr(dzc), Ptr(mask), t, h, tpb, Ptr(dk), Ptr(dv));
        return (dq, dk, dv);
    }
}

/// <summary>
/// TorchSharp autograd wrapper of the fused kernels: forward saves q, k, v (contiguous), the fp32 state, key sum,
/// eps·n and the output; backward runs the two backward kernels. Non-tensor arguments travel in a box so that autograd does not take
/// the mask for a differentiable input.
/// </summary>
internal sealed class FusedBidirectionalFunction : autograd.SingleTensorFunction<FusedBidirectionalFunction>
{
    public override string Name => "FusedLinearAttention";

    /// <summary>The fused bidirectional attention of <see cref="FusedLinearAttention"/>, differentiable in q, k and v.</summary>
    /// <param name="q">Queries [B, H, T, D].</param>
    /// <param name="k">Keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="mask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="map">Feature map applied to q and k inside the kernels.</param>
    /// <param name="eps">Normalizer epsilon (per token).</param>
    /// <param name="tensorCores">Whether the tensor-core kernels run where they are compiled for the inputs.</param>
    /// <param name="kernels">Kernels to launch: all, except when the profiler times the autograd path's host overhead alone.</param>
    public static Tensor Run(Tensor q, Tensor k, Tensor v, Tensor? mask, FusedFeatureMap map, double eps, bool tensorCores,
        FusedKernels kernels = FusedKernels.All)
        => apply(q, k, v, new AutogradArguments((mask, map, eps, tensorCores, kernels)));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var (mask, map, eps, tensorCores, kernels) = ((Tensor?, FusedFeatureMap, double, bool, FusedKernels))((AutogradArguments)vars[3]).Value!;
        var q = ((Tensor)vars[0]).contiguous();
        var k = ((Tensor)vars[1]).contiguous();
        var v = ((Tensor)vars[2]).contiguous();
        var m = mask?.contiguous();
        var (o, s, z, epsn, mma) = FusedLaunch.Forward(q, k, v, m, null, map, tensorCores, kernels, eps: eps);
        // o detached: saving the output itself would tie it to its own graph node.
        ctx.save_for_backward(new List<Tensor> { q, k, v, s, z, epsn, o.detach(), m! });
        ctx.save_data("map", map);
        ctx.save_data("mma", mma);   // backward takes the forward's path, whatever the switch says by then
        ctx.save_data("kernels", kernels);
        return o;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused linear attention", () =>
        {
            var saved = ctx.get_saved_variables();
            var map = (FusedFeatureMap)ctx.get_data("map");
            var mma = (bool)ctx.get_data("mma");
            var kernels = (FusedKernels)ctx.get_data("kernels");
            var (q, k, v, s, z, epsn, o) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]);
            var mask = saved.Count > 7 ? saved[7] : null;
            var dout = grad_output.to(q.dtype).contiguous();
            var (dq, dk, dv) = FusedLaunch.Backward(q, k, v, mask, epsn, s, z, o, dout, map, mma, kernels);
            return AutogradWrappers.Return(grad_output, dq, dk!, dv);   // dk is null only for Hedgehog's weights
        });
}

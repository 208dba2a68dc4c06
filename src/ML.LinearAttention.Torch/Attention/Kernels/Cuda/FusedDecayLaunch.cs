using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>The compiled causal decay kernels of one (device, D, Dv, dtype).</summary>
internal sealed record DecayModule(IntPtr Context, IntPtr State, IntPtr Scan, IntPtr Out, IntPtr BwdState, IntPtr Bwd,
    FusedDecayLaunch.Sizes Bytes);

/// <summary>
/// Module cache, buffers and launches of the causal decay kernels (decay_linear_attention.cu): compiled with NVRTC into
/// their own module (kernels.json's decay_linear_attention, MMA = 1), launched on the legacy default stream.
/// </summary>
internal static class FusedDecayLaunch
{
    /// <summary>Chunk (token tile) of the decay kernels (MTT in the source).</summary>
    public const int Chunk = 64;

    /// <summary>Dynamic shared-memory bytes of each decay kernel (must match the CUDA source).</summary>
    internal sealed record Sizes(int D, int Dv)
    {
        private const int Ldt2 = Chunk + 8;
        private int Ldd => D + 8;
        private int Lde => Dv + 8;
        private int Xn => Math.Max(D * Lde, Dv * Ldd);
        private int Xq => Math.Max(Xn, Chunk * Ldd);
        public int State => 2 * (D + Dv) * Ldt2 + 4 * 2 * Chunk;
        public int Out => 2 * (2 * Dv * Ldd + 2 * Chunk * Ldd + Dv * Ldt2 + Chunk * Ldt2) + 4 * 3 * Chunk;
        public int BwdState => 2 * (D + Dv) * Ldt2 + 4 * 2 * Chunk;
        public int Bwd => 2 * (Xq + Chunk * Ldd + 2 * D * Ldt2 + 2 * Chunk * Lde + Dv * Ldt2 + 4 * Chunk * Ldt2 + Xn) + 4 * 4 * Chunk;
        public int Max => Math.Max(Math.Max(State, Out), Math.Max(BwdState, Bwd));
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(int, int, int, int), DecayModule> Modules = new();

    /// <summary>Null when the decay kernels can run on this device for these head dims (sm_80+, shared memory), else why not.</summary>
    public static string? DeviceReason(int device, int d, int dv)
    {
        var info = FusedModuleCache.Device(device);
        if (info.Major < 8) return $"the fused decay kernels need tensor cores of sm_80 or newer (got sm_{info.Major}{info.Minor}).";
        var bytes = new Sizes(d, dv).Max;
        return bytes > info.MaxSharedOptIn ? $"D={d}, Dv={dv} needs {bytes} bytes of shared memory per block, the device allows {info.MaxSharedOptIn}." : null;
    }

    public static DecayModule Get(int device, int d, int dv, int inType)
    {
        lock (Gate)
        {
            var key = (device, d, dv, inType);
            if (Modules.TryGetValue(key, out var module)) return module;
            var info = FusedModuleCache.Device(device);
            FusedModuleCache.MakeCurrent(info.Context);
            var cubin = FusedModuleCache.Compile($"sm_{info.Major}{info.Minor}", FusedModuleCache.Tiling.For(d, dv), inType, FusedFeatureMap.Identity,
                mma: true, verbose: false, out _, CudaSources.DecayLinearAttention);
            var handle = FusedModuleCache.LoadModule(cubin);
            IntPtr Function(string name, int sharedBytes) => FusedModuleCache.Function(handle, name, sharedBytes);
            var s = new Sizes(d, dv);
            module = new DecayModule(info.Context, Function("decay_state", s.State), Function("decay_scan", 0), Function("decay_out", s.Out),
                Function("decay_bwd_state", s.BwdState), Function("decay_bwd", s.Bwd), s);
            Modules[key] = module;
            return module;
        }
    }

    private static DecayModule Module(Tensor q, long dv)
    {
        int device = q.device_index < 0 ? 0 : q.device_index;
        var module = Get(device, (int)q.shape[3], (int)dv, FusedLaunch.InType(q.dtype));
        FusedModuleCache.MakeCurrent(module.Context);
        return module;
    }

    private static long Ptr(Tensor? x) => FusedLaunch.Ptr(x);

    private static long Bits(double scale) => BitConverter.SingleToInt32Bits((float)scale);

    /// <summary>Chunks of a T-token row.</summary>
    internal static long Chunks(long t) => (t + Chunk - 1) / Chunk;

    private static void Scan(DecayModule m, Tensor x, Tensor logDecays, long bh, long nc, long cs, bool reverse)
        => FusedModuleCache.Launch(m.Scan, (cs + 255) / 256, bh, 0, Ptr(x), Ptr(logDecays), nc, cs, reverse ? 1 : 0);

    /// <summary>
    /// Forward: o [B, H, T, Dv], the fp32 decayed exclusive prefix states P [B·H, NC, D·Dv] and the chunks' total log
    /// decays L [B·H, NC]. q, k, v contiguous and 16-byte aligned, g fp32 [B, H, T] contiguous.
    /// </summary>
    public static (Tensor o, Tensor p, Tensor l) Forward(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? mask, double scale)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3], bh = b * h, nc = Chunks(t), cs = d * dv;
        var m = Module(q, dv);
        var p = torch.empty(new[] { bh, nc, cs }, dtype: ScalarType.Float32, device: q.device);
        var l = torch.empty(new[] { bh, nc }, dtype: ScalarType.Float32, device: q.device);
        var o = torch.empty(new[] { b, h, t, dv }, dtype: q.dtype, device: q.device);
        FusedModuleCache.Launch(m.State, nc, bh, m.Bytes.State, Ptr(k), Ptr(v), Ptr(g), Ptr(mask), t, h, nc, Ptr(p), Ptr(l));
        Scan(m, p, l, bh, nc, cs, reverse: false);
        FusedModuleCache.Launch(m.Out, nc, bh, m.Bytes.Out, Ptr(q), Ptr(k), Ptr(v), Ptr(g), Ptr(p), Ptr(mask), Bits(scale), t, h, nc, Ptr(o));
        return (o, p, l);
    }

    /// <summary>
    /// Backward: dq, dk, dv from dO and the forward's P and L, and dg [B, H, T] fp32, the reverse cumulative sum of the
    /// kernel's per-token dG = q·dq − k·dk (zero where the mask says padding: those gates are never read).
    /// </summary>
    public static (Tensor dq, Tensor dk, Tensor dv, Tensor dg) Backward(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? mask,
        Tensor p, Tensor l, Tensor dout, double scale)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dvh = v.shape[3], bh = b * h, nc = Chunks(t), cs = d * dvh;
        var m = Module(q, dvh);
        var dp = torch.empty_like(p);
        FusedModuleCache.Launch(m.BwdState, nc, bh, m.Bytes.BwdState, Ptr(q), Ptr(dout), Ptr(g), Ptr(mask), t, h, nc, Ptr(dp));
        Scan(m, dp, l, bh, nc, cs, reverse: true);
        var dq = torch.empty_like(q);
        var dk = torch.empty_like(k);
        var dv = torch.empty_like(v);
        var dG = torch.empty(new[] { b, h, t }, dtype: ScalarType.Float32, device: q.device);
        FusedModuleCache.Launch(m.Bwd, nc, bh, m.Bytes.Bwd, Ptr(q), Ptr(k), Ptr(v), Ptr(dout), Ptr(g), Ptr(p), Ptr(dp), Ptr(mask),
            Bits(scale), t, h, nc, Ptr(dq), Ptr(dk), Ptr(dv), Ptr(dG));
        return (dq, dk, dv, ReverseCumulative(dG, mask));
    }

    /// <summary>dg_u = Σ_{t≥u} dG_t along the last dim (each gate decays every later token), zero at padded tokens.</summary>
    internal static Tensor ReverseCumulative(Tensor dG, Tensor? mask)
    {
        var dg = dG.flip(-1).cumsum(-1).flip(-1);
        return mask is null ? dg : dg * mask.unsqueeze(1).to(ScalarType.Float32);
    }
}

/// <summary>
/// TorchSharp autograd wrapper of the causal decay kernels, differentiable in q, k, v and the log decays g: forward
/// saves q, k, v (contiguous, aligned), g (fp32), the prefix states and the chunks' log decays; backward runs the
/// backward kernels. Releases the gradient wrappers TorchSharp leaks, as the other fused functions do.
/// </summary>
internal sealed class FusedDecayFunction : autograd.SingleTensorFunction<FusedDecayFunction>
{
    public override string Name => "FusedCausalDecayAttention";

    public static Tensor Run(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? mask, double scale)
        => apply(q, k, v, g, new AutogradArguments((mask, scale)));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var (mask, scale) = ((Tensor?, double))((AutogradArguments)vars[4]).Value!;
        var q = FusedLaunch.Aligned(((Tensor)vars[0]).contiguous());
        var k = FusedLaunch.Aligned(((Tensor)vars[1]).contiguous());
        var v = FusedLaunch.Aligned(((Tensor)vars[2]).contiguous());
        var g = ((Tensor)vars[3]).to(ScalarType.Float32).contiguous();
        var m = mask?.contiguous();
        var (o, p, l) = FusedDecayLaunch.Forward(q, k, v, g, m, scale);
        ctx.save_for_backward(new List<Tensor> { q, k, v, g, p, l, m! });
        ctx.save_data("scale", scale);
        return o;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused causal decay attention", () =>
        {
            var saved = ctx.get_saved_variables();
            var scale = (double)ctx.get_data("scale");
            var (q, k, v, g, p, l) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
            var mask = saved.Count > 6 ? saved[6] : null;
            var dout = FusedLaunch.Aligned(grad_output.to(q.dtype).contiguous());
            var (dq, dk, dv, dg) = FusedDecayLaunch.Backward(q, k, v, g, mask, p, l, dout, scale);
            return AutogradWrappers.Return(grad_output, dq, dk, dv, dg);
        });
}

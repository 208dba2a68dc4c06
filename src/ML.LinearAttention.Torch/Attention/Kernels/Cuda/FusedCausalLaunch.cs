using System.Text;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>The compiled causal kernels of one (device, D, Dv, dtype, feature map).</summary>
internal sealed record CausalModule(IntPtr Context, IntPtr State, IntPtr Scan, IntPtr Out, IntPtr BwdState, IntPtr Bwd,
    FusedCausalLaunch.Sizes Bytes);

/// <summary>
/// Module cache, buffers and launches of the causal tensor-core kernels (causal_linear_attention.cu): compiled with
/// NVRTC into their own module (kernels.json's causal_linear_attention, MMA = 1), launched on the legacy default stream.
/// </summary>
internal static unsafe class FusedCausalLaunch
{
    /// <summary>Chunk (token tile) of the causal kernels (MTT in the source).</summary>
    public const int Chunk = 64;

    /// <summary>Dynamic shared-memory bytes of each causal kernel (must match the CUDA source).</summary>
    internal sealed record Sizes(int D, int Dv)
    {
        private const int Ldt2 = Chunk + 8;
        private int Ldd => D + 8;
        private int Lde => Dv + 8;
        private int Xn => Math.Max(D * Lde, Dv * Ldd);
        public int State => 2 * (D + Dv) * Ldt2;
        public int Out => 2 * (2 * Dv * Ldd + 2 * Chunk * Ldd + Dv * Ldt2 + Chunk * Ldt2) + 4 * (D + Chunk);
        public int BwdState => 2 * (D + Dv) * Ldt2 + 4 * 2 * Chunk;
        private int Xq => Math.Max(Xn, Chunk * Ldd);
        public int Bwd => 2 * (Xq + Chunk * Ldd + 2 * D * Ldt2 + 2 * Chunk * Lde + Dv * Ldt2 + 4 * Chunk * Ldt2 + Xn) + 4 * (D + 2 * Chunk);
        public int Max => Math.Max(Math.Max(State, Out), Math.Max(BwdState, Bwd));
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(int, int, int, int, int), CausalModule> Modules = new();

    /// <summary>Null when the causal kernels can run on this device for these head dims (sm_80+, shared memory), else why not.</summary>
    public static string? DeviceReason(int device, int d, int dv)
    {
        var info = FusedModuleCache.Device(device);
        if (info.Major < 8) return $"the causal fused kernels need tensor cores of sm_80 or newer (got sm_{info.Major}{info.Minor}).";
        var bytes = new Sizes(d, dv).Max;
        return bytes > info.MaxSharedOptIn ? $"D={d}, Dv={dv} needs {bytes} bytes of shared memory per block, the device allows {info.MaxSharedOptIn}." : null;
    }

    public static CausalModule Get(int device, int d, int dv, int inType, FusedFeatureMap map)
    {
        lock (Gate)
        {
            var key = (device, d, dv, inType, (int)map);
            if (Modules.TryGetValue(key, out var module)) return module;
            var info = FusedModuleCache.Device(device);
            CudaLibraries.Check(CudaLibraries.cuCtxSetCurrent(info.Context), "cuCtxSetCurrent");
            var cubin = FusedModuleCache.Compile($"sm_{info.Major}{info.Minor}", FusedModuleCache.Tiling.For(d, dv), inType, map,
                mma: true, verbose: false, out _, CudaSources.CausalLinearAttention);
            var handle = FusedModuleCache.LoadModule(cubin);
            IntPtr Function(string name, int sharedBytes) => FusedModuleCache.Function(handle, name, sharedBytes);
            var s = new Sizes(d, dv);
            module = new CausalModule(info.Context, Function("causal_state", s.State), Function("causal_scan", 0), Function("causal_out", s.Out),
                Function("causal_bwd_state", s.BwdState), Function("causal_bwd", s.Bwd), s);
            Modules[key] = module;
            return module;
        }
    }

    private static CausalModule Module(Tensor q, long dv, FusedFeatureMap map)
    {
        int device = q.device_index < 0 ? 0 : q.device_index;
        var module = Get(device, (int)q.shape[3], (int)dv, FusedLaunch.InType(q.dtype), map);
        CudaLibraries.Check(CudaLibraries.cuCtxSetCurrent(module.Context), "cuCtxSetCurrent");
        return module;
    }

    private static long Ptr(Tensor? x) => FusedLaunch.Ptr(x);

    /// <summary>x, or a fresh copy when its data is not 16-byte aligned (the kernels load 8 halves at a time).</summary>
    public static Tensor Aligned(Tensor x) => FusedLaunch.Aligned(x);

    private static long Chunks(long t) => (t + Chunk - 1) / Chunk;

    private static void Scan(CausalModule m, Tensor x, long bh, long nc, long cs, bool reverse)
        => FusedModuleCache.Launch(m.Scan, (cs + 255) / 256, bh, 0, Ptr(x), nc, cs, reverse ? 1 : 0);

    /// <summary>Forward: o [B, H, T, Dv], the fp32 exclusive prefix records P [B·H, NC, D·Dv + D] and 1/den [B, H, T] (fp32).</summary>
    public static (Tensor o, Tensor p, Tensor rden) Forward(Tensor q, Tensor k, Tensor v, Tensor? mask, FusedFeatureMap map, double eps)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dv = v.shape[3], bh = b * h, nc = Chunks(t), cs = d * dv + d;
        var m = Module(q, dv, map);
        var p = torch.zeros(new[] { bh, nc, cs }, dtype: ScalarType.Float32, device: q.device);
        var rden = torch.empty(new[] { b, h, t }, dtype: ScalarType.Float32, device: q.device);
        var o = torch.empty(new[] { b, h, t, dv }, dtype: q.dtype, device: q.device);
        FusedModuleCache.Launch(m.State, nc, bh, m.Bytes.State, Ptr(k), Ptr(v), Ptr(mask), t, h, nc, Ptr(p));
        Scan(m, p, bh, nc, cs, reverse: false);
        FusedModuleCache.Launch(m.Out, nc, bh, m.Bytes.Out, Ptr(q), Ptr(k), Ptr(v), Ptr(p), Ptr(mask),
            BitConverter.SingleToInt32Bits((float)eps), t, h, nc, Ptr(o), Ptr(rden));
        return (o, p, rden);
    }

    /// <summary>Backward: dq, dk, dv from dO and the forward's o, P and 1/den (all contiguous, aligned).</summary>
    public static (Tensor dq, Tensor dk, Tensor dv) Backward(Tensor q, Tensor k, Tensor v, Tensor? mask, Tensor o, Tensor p,
        Tensor rden, Tensor dout, FusedFeatureMap map)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3], dvh = v.shape[3], bh = b * h, nc = Chunks(t), cs = d * dvh + d;
        var m = Module(q, dvh, map);
        var dp = torch.zeros_like(p);
        FusedModuleCache.Launch(m.BwdState, nc, bh, m.Bytes.BwdState, Ptr(q), Ptr(dout), Ptr(o), Ptr(rden), Ptr(mask), t, h, nc, Ptr(dp));
        Scan(m, dp, bh, nc, cs, reverse: true);
        var dq = torch.empty_like(q);
        var dk = torch.empty_like(k);
        var dv = torch.empty_like(v);
        FusedModuleCache.Launch(m.Bwd, nc, bh, m.Bytes.Bwd, Ptr(q), Ptr(k), Ptr(v), Ptr(dout), Ptr(o), Ptr(rden), Ptr(p), Ptr(dp),
            Ptr(mask), t, h, nc, Ptr(dq), Ptr(dk), Ptr(dv));
        return (dq, dk, dv);
    }
}

/// <summary>
/// TorchSharp autograd wrapper of the causal fused kernels: forward saves q, k, v (contiguous, aligned), the prefix
/// records, 1/den and the output; backward runs the backward kernels. Releases the gradient wrappers TorchSharp leaks,
/// as <see cref="FusedBidirectionalFunction"/> does.
/// </summary>
internal sealed class FusedCausalFunction : autograd.SingleTensorFunction<FusedCausalFunction>
{
    public override string Name => "FusedCausalLinearAttention";

    public static Tensor Run(Tensor q, Tensor k, Tensor v, Tensor? mask, FusedFeatureMap map, double eps)
        => apply(q, k, v, new AutogradArguments((mask, map, eps)));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        AutogradWrappers.ReleaseReturned();
        var (mask, map, eps) = ((Tensor?, FusedFeatureMap, double))((AutogradArguments)vars[3]).Value!;
        var q = FusedCausalLaunch.Aligned(((Tensor)vars[0]).contiguous());
        var k = FusedCausalLaunch.Aligned(((Tensor)vars[1]).contiguous());
        var v = FusedCausalLaunch.Aligned(((Tensor)vars[2]).contiguous());
        var m = mask?.contiguous();
        var (o, p, rden) = FusedCausalLaunch.Forward(q, k, v, m, map, eps);
        ctx.save_for_backward(new List<Tensor> { q, k, v, p, rden, o.detach(), m! });
        ctx.save_data("map", map);
        return o;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        => AutogradWrappers.Backward("the fused causal linear attention", () =>
        {
            var saved = ctx.get_saved_variables();
            var map = (FusedFeatureMap)ctx.get_data("map");
            var (q, k, v, p, rden, o) = (saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
            var mask = saved.Count > 6 ? saved[6] : null;
            var dout = FusedCausalLaunch.Aligned(grad_output.to(q.dtype).contiguous());
            var (dq, dk, dv) = FusedCausalLaunch.Backward(q, k, v, mask, o, p, rden, dout, map);
            return AutogradWrappers.Return(grad_output, dq, dk, dv);
        });
}

using System.Runtime.InteropServices;
using System.Text;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;


/// <summary>One compiled module (a shape, dtype and feature map on one device) and its four kernels.</summary>
internal sealed record FusedModule(IntPtr Context, IntPtr FwdState, IntPtr FwdOut, IntPtr BwdQ, IntPtr BwdKv,
    FusedModuleCache.Tiling Tiles, int SmCount)
{
    /// <summary>The tensor-core kernels (linear_attention_mma_*.cuh), or null when this module has none.</summary>
    public MmaKernels? Mma { get; init; }

    /// <summary>
    /// Shared-memory bytes each tensor-core kernel takes beyond <see cref="Tiles"/>' figure: 0, or in a Hedgehog module
    /// (HH = 1: φ computed from x in the loaders) W_hᵀ, the x tile and the softmax exchange. A Hedgehog module's
    /// backward kernels have their own layouts (<see cref="HedgehogQBytes"/>, <see cref="HedgehogKvBytes"/>).
    /// </summary>
    public int HedgehogBytes { get; init; }

    /// <summary>Shared-memory bytes of the Hedgehog whole-head forward (<see cref="MmaKernels.FwdHead"/>); 0 elsewhere.</summary>
    public int HedgehogHeadBytes { get; init; }

    /// <summary>Shared-memory bytes of a Hedgehog module's <c>mma_bwd_kv</c> (warp by warp, its own layout); 0 elsewhere.</summary>
    public int HedgehogKvBytes { get; init; }

    /// <summary>Whether Hedgehog's <c>mma_bwd_kv</c> adds the key map's dW into its last argument itself (and stores no dy_k).</summary>
    public bool HedgehogKeyWeightsInKernel { get; init; }

    /// <summary>Shared-memory bytes of a Hedgehog module's <c>mma_bwd_q</c> (warp by warp, its own layout); 0 elsewhere.</summary>
    public int HedgehogQBytes { get; init; }
}

/// <summary>The four tensor-core kernels of a module (and, in a Hedgehog module, the whole-head forward).</summary>
internal sealed record MmaKernels(IntPtr FwdState, IntPtr FwdOut, IntPtr BwdQ, IntPtr BwdKv)
{
    /// <summary><c>mma_fwd_head</c>: the key pass, then the query pass, one block per head (Hedgehog modules only; else 0).</summary>
    public IntPtr FwdHead { get; init; }
}

/// <summary>
/// Compiles the CUDA modules of kernels.json (<see cref="CudaSources"/>) with NVRTC, the bidirectional one once per
/// process per (device, D, Dv, dtype, feature map), for
/// the device's own architecture (sm_XY from its compute capability), loads it into the device's primary context
/// (the one libtorch uses) and launches kernels on the legacy default stream, which orders them with libtorch's work.
/// </summary>
internal static unsafe class FusedModuleCache
{
    /// <summary>Token tile, padded widths and shared-memory bytes of each kernel (must match the CUDA source).</summary>
    internal sealed record Tiling(int D, int Dv, int TT, int PD, int PDV, int LDT)
    {
        public int StateBytes => 4 * (TT * PD + TT * PDV);
        public int OutBytes => 4 * (D * PDV + D * LDT + D + TT);
        public int BwdQBytes => 4 * (D * PDV + Dv * PD + TT * PD + D * LDT + TT * PDV + Dv * LDT + D + 2 * TT);
        public int BwdKvBytes => 4 * (D * PDV + Dv * PD + D * LDT + Dv * LDT + D);
        public int MaxBytes => Math.Max(Math.Max(StateBytes, OutBytes), Math.Max(BwdQBytes, BwdKvBytes));

        /// <summary>Token tile of the tensor-core kernels (MTT in mma_common.cuh).</summary>
        public const int MmaTT = 64;
        private int Ldd => D + 8;
        private int Lde => Dv + 8;
        // Shared-memory bytes of the tensor-core kernels (16-bit tiles; must match linear_attention_mma_*.cuh).
        public int MmaStateBytes => 2 * (MmaTT * Ldd + MmaTT * Lde);
        public int MmaOutBytes => 2 * (2 * D * Lde + MmaTT * Ldd) + 4 * (D + MmaTT);
        public int MmaBwdQBytes => 2 * (2 * D * Lde + MmaTT * Ldd + MmaTT * Lde) + 4 * (D + 3 * MmaTT);
        public int MmaBwdKvBytes => 2 * (2 * D * Lde + MmaTT * Lde + MmaTT * Ldd) + 4 * D;
        public int MmaMaxBytes => Math.Max(Math.Max(MmaStateBytes, MmaOutBytes), Math.Max(MmaBwdQBytes, MmaBwdKvBytes));

        /// <summary>True when the tensor-core kernels apply: bf16/fp16 inputs, D and Dv multiples of 16, sm_80 or newer.</summary>
        public bool MmaEligible(int inType, int smMajor) => inType != 0 && D % 16 == 0 && Dv % 16 == 0 && smMajor >= 8;

        public static Tiling For(int d, int dv)
        {
            int tt = d > 64 || dv > 64 ? 32 : 64;
            return new Tiling(d, dv, tt, (d + 15) / 16 * 16, (dv + 15) / 16 * 16, tt + 4);
        }
    }

    /// <summary>
    /// Shared memory the Hedgehog loaders add to each tensor-core kernel (HH_SMEM in mma_tiles.cuh):
    /// W_hᵀ [F][HX + 8] as 16-bit values, the softmax exchange [2][64][4] fp32, and the x tile [64][HX + 8] unless it
    /// fits in the φ tile's space (HH_XS_FITS: φ's rows [64][2F + 8] hold it).
    /// </summary>
    internal static int HedgehogBytes(int hx, int f)
    {
        int tile = Tiling.MmaTT, xTile = tile * (hx + 8);
        bool fits = 2 * f >= hx;
        return 2 * f * (hx + 8) + 4 * 2 * tile * 4 + (fits ? 0 : 2 * xTile);
    }

    /// <summary>
    /// Shared memory of Hedgehog's whole-head forward (<c>mma_fwd_head</c>, must match the source): φk and v tiles,
    /// S high and low, z and 1/den, then both maps' W_hᵀ, the exchange and the x tile where it has its own space.
    /// </summary>
    internal static int HedgehogHeadBytes(Tiling tiles, int hx, int f)
    {
        int tile = Tiling.MmaTT, ldd = tiles.D + 8, lde = tiles.Dv + 8;
        // The query pass's x rows (8 warps × 16 rows) take the φk and v tiles where they fit (HH_XW_FITS), else their own
        // space after the exchange (sharing it with the key pass's x tile, which is done by then).
        int rows = 8 * 16 * (hx + 8), keyX = 2 * f >= hx ? 0 : tile * (hx + 8);
        int queryRows = tile * (ldd + lde) >= rows ? 0 : Math.Max(0, rows - keyX);
        return 2 * (tile * ldd + tile * lde + 2 * tiles.D * lde + queryRows) + 4 * (tiles.D + tile) + HedgehogBytes(hx, f) + 2 * f * (hx + 8);
    }

    /// <summary>
    /// Whether Hedgehog's <c>mma_bwd_kv</c> reduces the key map's dW = xᵀdy itself (HH_KV_DW in the source, which must
    /// agree): for bf16 inputs (no low half of dS), where the fp32 sums [HX][F + 8] fit in that half's space and dy
    /// (F wide) in the v rows' (F ≤ Dv).
    /// </summary>
    internal static bool HedgehogKeyWeightsInKernel(Tiling tiles, int hx, int f, int inType)
        => inType == 1 && f <= tiles.Dv && hx * (f + 8) <= f * (tiles.Dv + 8);

    /// <summary>
    /// Shared memory of Hedgehog's <c>mma_bwd_kv</c> (warp by warp, hh_kv_pass; must match the source): dS high and low,
    /// each warp's 16 x rows (twice, double buffered, where it reduces dW itself) and 16 v rows, dz, then W_kᵀ.
    /// </summary>
    internal static int HedgehogKvBytes(Tiling tiles, int hx, int f, int inType)
    {
        int lde = tiles.Dv + 8, warpRows = 8 * 16, xBuffers = HedgehogKeyWeightsInKernel(tiles, hx, f, inType) ? 2 : 1;
        return 2 * (2 * tiles.D * lde + xBuffers * warpRows * (hx + 8) + warpRows * lde) + 4 * tiles.D + 2 * f * (hx + 8);
    }

    /// <summary>
    /// Shared memory of Hedgehog's <c>mma_bwd_q</c> (warp by warp, hh_q_pass; must match the source): S high and low,
    /// the block's φq and g tiles of 8 warps × 16 rows, z, W_qᵀ, then the warps' x rows where they do not fit in φq's.
    /// </summary>
    internal static int HedgehogQBytes(Tiling tiles, int hx, int f)
    {
        int ldd = tiles.D + 8, lde = tiles.Dv + 8, rows = 8 * 16, ownX = hx + 8 <= ldd ? 0 : rows * (hx + 8);
        return 2 * (2 * tiles.D * lde + rows * ldd + rows * lde) + 4 * tiles.D + 2 * f * (hx + 8) + 2 * ownX;
    }

    /// <summary>
    /// The -D defines of a Hedgehog attention module beyond the manifest's HH = 1: x's width, the feature dim, and the
    /// blocks per SM to compile for (HH_MINB) when given or set in <see cref="FusedKernelOptions.HedgehogAttentionBlocksPerSm"/>.
    /// </summary>
    /// <param name="hx">x's width.</param>
    /// <param name="f">The feature dim F.</param>
    /// <param name="blocksPerSm">Blocks per SM to compile for, or null for the options' value or the source's default.</param>
    internal static string[] HedgehogDefines(int hx, int f, int? blocksPerSm = null)
        => (blocksPerSm ?? FusedKernelOptions.Current.HedgehogAttentionBlocksPerSm) is { } n
            ? [$"HX={hx}", $"HF={f}", $"HH_MINB={n}"]
            : [$"HX={hx}", $"HF={f}"];

    private static readonly Dictionary<(int, int, int, int, int, int?), FusedModule> HedgehogModules = new();

    /// <summary>
    /// The tensor-core kernels built for Hedgehog's attention (x of width <paramref name="hx"/>, feature dim
    /// <paramref name="f"/>, so φ is D = 2F wide, values <paramref name="dv"/> wide; bf16 or fp16), compiled once per
    /// process and device (per <paramref name="blocksPerSm"/>, which benchmarks set). The caller checks eligibility
    /// (sm_80+, multiples of 16, 2F and HX at most 128).
    /// </summary>
    public static FusedModule GetHedgehog(int device, int hx, int f, int dv, int inType, int? blocksPerSm = null)
    {
        lock (Gate)
        {
            var key = (device, hx, f, dv, inType, blocksPerSm);
            if (HedgehogModules.TryGetValue(key, out var module)) return module;
            var info = Device(device);
            CudaLibraries.Check(CudaLibraries.cuCtxSetCurrent(info.Context), "cuCtxSetCurrent");
            var tiles = Tiling.For(2 * f, dv);
            int extra = HedgehogBytes(hx, f);
            var cubin = Compile($"sm_{info.Major}{info.Minor}", tiles, inType, FusedFeatureMap.Identity, mma: true, verbose: false, out _,
                CudaSources.HedgehogAttention, HedgehogDefines(hx, f, blocksPerSm));
            var handle = LoadModule(cubin);
            IntPtr Function(string name, int sharedBytes) => FusedModuleCache.Function(handle, name, sharedBytes + extra);
            module = new FusedModule(info.Context, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, tiles, info.SmCount)
            {
                Mma = new MmaKernels(Function("mma_fwd_state", tiles.MmaStateBytes), Function("mma_fwd_out", tiles.MmaOutBytes),
                    FusedModuleCache.Function(handle, "mma_bwd_q", HedgehogQBytes(tiles, hx, f)),
                    FusedModuleCache.Function(handle, "mma_bwd_kv", HedgehogKvBytes(tiles, hx, f, inType)))
                {
                    FwdHead = FusedModuleCache.Function(handle, "mma_fwd_head", HedgehogHeadBytes(tiles, hx, f)),
                },
                HedgehogBytes = extra,
                HedgehogHeadBytes = HedgehogHeadBytes(tiles, hx, f),
                HedgehogKvBytes = HedgehogKvBytes(tiles, hx, f, inType),
                HedgehogKeyWeightsInKernel = HedgehogKeyWeightsInKernel(tiles, hx, f, inType),
                HedgehogQBytes = HedgehogQBytes(tiles, hx, f),
            };
            return HedgehogModules[key] = module;
        }
    }

    internal sealed record DeviceInfo(IntPtr Context, int Major, int Minor, int SmCount, int MaxSharedOptIn);

    private static readonly object Gate = new();
    private static readonly Dictionary<int, DeviceInfo> Devices = new();
    private static readonly Dictionary<(int, int, int, int, int), FusedModule> Modules = new();

    /// <summary>Makes the device's primary context current on this thread (autograd runs backward on its own threads).</summary>
    public static void MakeCurrent(FusedModule module) => MakeCurrent(module.Context);

    /// <summary>Makes <paramref name="context"/> current on this thread.</summary>
    public static void MakeCurrent(IntPtr context) => CudaLibraries.Check(CudaLibraries.cuCtxSetCurrent(context), "cuCtxSetCurrent");

    /// <summary>Loads a CUBIN into the current context and returns its kernel <paramref name="name"/> (dynamic shared memory raised to <paramref name="sharedBytes"/>).</summary>
    internal static IntPtr LoadFunction(byte[] cubin, string name, int sharedBytes) => Function(LoadModule(cubin), name, sharedBytes);

    private static readonly object ShapeFreeGate = new();
    private static readonly Dictionary<(int Device, int InType, string Module), IntPtr[]> ShapeFree = new();

    /// <summary>
    /// The kernels <paramref name="names"/> of a kernels.json module without a tile shape of its own (row-wise kernels:
    /// RMSNorm, rotary positions), compiled once per device and input type (identity map, 16-wide tiles, no dynamic shared
    /// memory); the device's context is made current.
    /// </summary>
    internal static IntPtr[] ShapeFreeKernels(TorchSharp.torch.Tensor x, string module, params string[] names)
        => ShapeFreeKernels(x, module, dynamicShared: false, names);

    /// <summary>
    /// As <see cref="ShapeFreeKernels(TorchSharp.torch.Tensor, string, string[])"/>; with <paramref name="dynamicShared"/>
    /// the kernels may take dynamic shared memory up to the device's opt-in limit (<see cref="DeviceInfo.MaxSharedOptIn"/>).
    /// </summary>
    internal static IntPtr[] ShapeFreeKernels(TorchSharp.torch.Tensor x, string module, bool dynamicShared, params string[] names)
    {
        int device = x.device_index < 0 ? 0 : x.device_index, inType = FusedLaunch.InType(x.dtype);
        var info = Device(device);
        MakeCurrent(info.Context);
        lock (ShapeFreeGate)
        {
            if (ShapeFree.TryGetValue((device, inType, module), out var kernels)) return kernels;
            var loaded = LoadModule(Compile($"sm_{info.Major}{info.Minor}", Tiling.For(16, 16), inType, FusedFeatureMap.Identity, mma: false, verbose: false, out _, module));
            int shared = dynamicShared ? info.MaxSharedOptIn : 0;
            return ShapeFree[(device, inType, module)] = names.Select(n => Function(loaded, n, shared)).ToArray();
        }
    }

    /// <summary>Loads a CUBIN into the current context.</summary>
    internal static IntPtr LoadModule(byte[] cubin)
    {
        IntPtr loaded;
        fixed (byte* image = cubin) CudaLibraries.Check(CudaLibraries.cuModuleLoadData(&loaded, image), "cuModuleLoadData");
        return loaded;
    }

    internal static IntPtr Function(IntPtr module, string name, int sharedBytes)
    {
        IntPtr f;
        var bytes = Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* p = bytes) CudaLibraries.Check(CudaLibraries.cuModuleGetFunction(&f, module, p), "cuModuleGetFunction " + name);
        // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: needed above 48 KB.
        CudaLibraries.Check(CudaLibraries.cuFuncSetAttribute(f, 8, sharedBytes), "cuFuncSetAttribute " + name);
        return f;
    }

    private static readonly Dictionary<(IntPtr, int), int> Occupancy = new();

    /// <summary>Blocks of 256 threads of <paramref name="function"/> that fit on one SM at once with this dynamic shared memory (at least 1).</summary>
    public static int BlocksPerSm(IntPtr function, int sharedBytes)
    {
        lock (Gate)
        {
            if (Occupancy.TryGetValue((function, sharedBytes), out var n)) return n;
            int blocks;
            CudaLibraries.Check(CudaLibraries.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, function, 256, (nuint)sharedBytes), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
            return Occupancy[(function, sharedBytes)] = Math.Max(1, blocks);
        }
    }

    /// <summary>Largest dynamic shared memory a block may use on the device (opt-in limit).</summary>
    public static int MaxSharedBytes(int device) => Device(device).MaxSharedOptIn;

    public static FusedModule Get(int device, int d, int dv, int inType, FusedFeatureMap map)
    {
        lock (Gate)
        {
            var key = (device, d, dv, inType, (int)map);
            if (Modules.TryGetValue(key, out var module)) return module;
            var info = Device(device);
            CudaLibraries.Check(CudaLibraries.cuCtxSetCurrent(info.Context), "cuCtxSetCurrent");
            var tiles = Tiling.For(d, dv);
            bool mma = tiles.MmaEligible(inType, info.Major);
            var cubin = Compile($"sm_{info.Major}{info.Minor}", tiles, inType, map, mma, verbose: false, out _);
            var handle = LoadModule(cubin);
            IntPtr Function(string name, int sharedBytes) => FusedModuleCache.Function(handle, name, sharedBytes);
            module = new FusedModule(info.Context, Function("fwd_state", tiles.StateBytes), Function("fwd_out", tiles.OutBytes),
                Function("bwd_q", tiles.BwdQBytes), Function("bwd_kv", tiles.BwdKvBytes), tiles, info.SmCount)
            {
                Mma = mma ? new MmaKernels(Function("mma_fwd_state", tiles.MmaStateBytes), Function("mma_fwd_out", tiles.MmaOutBytes),
                    Function("mma_bwd_q", tiles.MmaBwdQBytes), Function("mma_bwd_kv", tiles.MmaBwdKvBytes)) : null,
            };
            Modules[key] = module;
            return module;
        }
    }

    internal static DeviceInfo Device(int ordinal)
    {
        lock (Gate)
        {
            if (Devices.TryGetValue(ordinal, out var info)) return info;
            CudaLibraries.Check(CudaLibraries.cuInit(0), "cuInit");
            int dev, major, minor, sms, smem;
            CudaLibraries.Check(CudaLibraries.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
            CudaLibraries.Check(CudaLibraries.cuDeviceGetAttribute(&major, 75, dev), "cuDeviceGetAttribute(major)");
            CudaLibraries.Check(CudaLibraries.cuDeviceGetAttribute(&minor, 76, dev), "cuDeviceGetAttribute(minor)");
            CudaLibraries.Check(CudaLibraries.cuDeviceGetAttribute(&sms, 16, dev), "cuDeviceGetAttribute(SM count)");
            CudaLibraries.Check(CudaLibraries.cuDeviceGetAttribute(&smem, 97, dev), "cuDeviceGetAttribute(shared memory opt-in)");
            IntPtr ctx;
            CudaLibraries.Check(CudaLibraries.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
            info = new DeviceInfo(ctx, major, minor, sms, smem);
            Devices[ordinal] = info;
            return info;
        }
    }

    /// <summary>NVRTC options: architecture and the shape/dtype/feature-map macros of the source.</summary>
    internal static string[] Options(string arch, Tiling t, int inType, FusedFeatureMap map, bool mma, bool verbose)
    {
        var options = new List<string>
        {
            "--gpu-architecture=" + arch, "--std=c++17",
            $"-DD={t.D}", $"-DDV={t.Dv}", $"-DTT={t.TT}", $"-DPD={t.PD}", $"-DPDV={t.PDV}", $"-DLDT={t.LDT}",
            $"-DIN_T={inType}", $"-DFMAP={(int)map}", $"-DMMA={(mma ? 1 : 0)}",
        };
        // NVRTC 11.8's ptxas capped some tensor-core kernels at 32 registers and spilled (elu map, D=32/Dv=48); 255 is the hardware limit.
        if (mma) options.Add("--maxrregcount=255");
        if (verbose) options.Add("--ptxas-options=-v");
        return options.ToArray();
    }

    /// <summary>
    /// Compiles the kernels.json module <paramref name="module"/> (default: the bidirectional kernels) to a CUBIN for
    /// <paramref name="arch"/> (sm_XY), with the shape options, the manifest's defines and <paramref name="defines"/>
    /// (NAME=VALUE) as -D options; throws with NVRTC's log on failure.
    /// </summary>
    internal static byte[] Compile(string arch, Tiling tiles, int inType, FusedFeatureMap map, bool mma, bool verbose, out string log,
        string module = CudaSources.LinearAttention, IEnumerable<string>? defines = null)
    {
        var source = CudaSources.Module(module);
        var options = Options(arch, tiles, inType, map, mma, verbose).Concat(source.Defines.Concat(defines ?? []).Select(d => "-D" + d)).ToArray();
        return CompileProgram(source.SourceName, source.Source, source.Headers, options,
            $"compilation of the CUDA module {module} ({arch}, D={tiles.D}, Dv={tiles.Dv})", out log);
    }

    /// <summary>
    /// Compiles one NVRTC program: <paramref name="source"/> named <paramref name="name"/>, with <paramref name="headers"/>
    /// given as named sources for its #include lines (nvrtcCreateProgram's headers and includeNames), to a CUBIN.
    /// </summary>
    internal static byte[] CompileProgram(string name, string source, IReadOnlyList<(string Name, string Text)> headers, string[] options,
        string what, out string log)
    {
        var strings = new List<IntPtr>();
        IntPtr Ansi(string text) { var p = Marshal.StringToCoTaskMemUTF8(text); strings.Add(p); return p; }
        IntPtr program = IntPtr.Zero;
        try
        {
            var src = Ansi(source);
            var programName = Ansi(name);
            var headerTexts = headers.Select(h => Ansi(h.Text)).ToArray();
            var includeNames = headers.Select(h => Ansi(h.Name)).ToArray();
            var opts = options.Select(Ansi).ToArray();
            fixed (IntPtr* texts = headerTexts)
            fixed (IntPtr* names = includeNames)
                CudaLibraries.CheckNvrtc(CudaLibraries.nvrtcCreateProgram(&program, (byte*)src, (byte*)programName, headers.Count,
                    headers.Count == 0 ? null : (byte**)texts, headers.Count == 0 ? null : (byte**)names), "nvrtcCreateProgram");
            int result;
            fixed (IntPtr* o = opts) result = CudaLibraries.nvrtcCompileProgram(program, opts.Length, (byte**)o);
            nuint logSize;
            CudaLibraries.nvrtcGetProgramLogSize(program, &logSize);
            var logBytes = new byte[(int)logSize + 1];
            fixed (byte* l = logBytes) CudaLibraries.nvrtcGetProgramLog(program, l);
            log = Encoding.UTF8.GetString(logBytes).TrimEnd('\0');
            CudaLibraries.CheckNvrtc(result, what, log);
            nuint size;
            CudaLibraries.CheckNvrtc(CudaLibraries.nvrtcGetCUBINSize(program, &size), "nvrtcGetCUBINSize");
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin) CudaLibraries.CheckNvrtc(CudaLibraries.nvrtcGetCUBIN(program, c), "nvrtcGetCUBIN");
            return cubin;
        }
        finally
        {
            if (program != IntPtr.Zero) CudaLibraries.nvrtcDestroyProgram(&program);
            foreach (var p in strings) Marshal.FreeCoTaskMem(p);
        }
    }

    /// <summary>
    /// Launches <paramref name="function"/> on grid (gx, gy) × 256 threads on the legacy default stream. Every argument
    /// is passed as an 8-byte slot (pointers; ints read from the low 4 bytes, little-endian).
    /// </summary>
    public static void Launch(IntPtr function, long gx, long gy, int sharedBytes, params long[] args)
    {
        if (gx <= 0 || gy <= 0) return;
        if (gy > 65535) throw new ArgumentException($"B·H = {gy} exceeds the fused kernel's grid limit of 65535 heads in total; split the batch.");
        if (gx > int.MaxValue) throw new ArgumentException($"A fused kernel's grid of {gx} blocks exceeds CUDA's limit of 2³¹ − 1 blocks per grid row; split the batch.");
        long* values = stackalloc long[args.Length];
        void** pointers = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++) { values[i] = args[i]; pointers[i] = values + i; }
        CudaLibraries.Check(CudaLibraries.cuLaunchKernel(function, (uint)gx, (uint)gy, 1, 256, 1, 1, (uint)sharedBytes, IntPtr.Zero, pointers, null), "cuLaunchKernel");
    }
}

using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>NCCL's 128-byte <c>ncclUniqueId</c>: made by one rank, handed to every rank to join the same communicator.</summary>
[StructLayout(LayoutKind.Sequential, Size = NcclUniqueId.Bytes)]
public unsafe struct NcclUniqueId
{
    public const int Bytes = 128;
    private fixed byte _internal[Bytes];

    public byte[] ToArray()
    {
        var bytes = new byte[Bytes];
        fixed (byte* p = _internal) new ReadOnlySpan<byte>(p, Bytes).CopyTo(bytes);
        return bytes;
    }

    public static NcclUniqueId FromArray(byte[] bytes)
    {
        if (bytes is null || bytes.Length != Bytes) throw new ArgumentException($"An NCCL unique id has exactly {Bytes} bytes (got {bytes?.Length ?? 0}).", nameof(bytes));
        var id = new NcclUniqueId();
        bytes.CopyTo(new Span<byte>(id._internal, Bytes));
        return id;
    }
}

/// <summary>
/// Thin binding to NCCL (<c>libnccl.so.2</c>, the library that ships with PyTorch's CUDA wheels and that libtorch_cuda
/// itself loads), resolved at run time through function pointers so that nothing loads it until a GPU group is made.
/// Lookup: <c>ML_LINEARATTENTION_NCCL</c> (a full path) if set, else the soname <c>libnccl.so.2</c>, then
/// <c>libnccl.so</c>, through the normal loader search (LD_LIBRARY_PATH).
/// </summary>
internal static unsafe class NcclNative
{
    public const string EnvironmentOverride = "ML_LINEARATTENTION_NCCL";

    // ncclDataType_t and ncclRedOp_t (nccl.h, stable since NCCL 2.0 / 2.10 for bf16).
    public const int Int8 = 0, Uint8 = 1, Int32 = 2, Int64 = 4, Float16 = 6, Float32 = 7, Float64 = 8, BFloat16 = 9;
    public const int Sum = 0;

    private static readonly Lazy<IntPtr> Library = new(Load);
    private static IntPtr Lib => Library.Value;

    private static IntPtr Load()
    {
        string? overridden = Environment.GetEnvironmentVariable(EnvironmentOverride);
        var candidates = string.IsNullOrWhiteSpace(overridden) ? new[] { "libnccl.so.2", "libnccl.so" } : new[] { overridden };
        foreach (var name in candidates)
            if (NativeLibrary.TryLoad(name, out var handle)) return handle;
        throw new DllNotFoundException(string.IsNullOrWhiteSpace(overridden)
            ? "NCCL (libnccl.so.2) was not found. Multi-GPU training needs NVIDIA's collective library, which ships with PyTorch's CUDA " +
              "wheels (site-packages/nvidia/nccl/lib or nvidia/cu13/lib): add that folder to LD_LIBRARY_PATH, or set " +
              $"{EnvironmentOverride}=/full/path/to/libnccl.so.2. On a machine without GPUs use ThreadCollectives (CPU) instead."
            : $"{EnvironmentOverride} points to '{overridden}', which could not be loaded as NCCL; fix the path or unset the variable to search for libnccl.so.2.");
    }

    /// <summary>True when NCCL can be loaded (no exception).</summary>
    public static bool IsAvailable(out string? why)
    {
        try { _ = Lib; why = null; return true; }
        catch (DllNotFoundException e) { why = e.Message; return false; }
    }

    private static IntPtr Export(string name) => NativeLibrary.TryGetExport(Lib, name, out var f) ? f
        : throw new EntryPointNotFoundException($"The loaded NCCL library has no '{name}' (NCCL ≥ 2.10 is needed).");

    private static readonly Lazy<IntPtr> PGetVersion = new(() => Export("ncclGetVersion"));
    private static readonly Lazy<IntPtr> PGetErrorString = new(() => Export("ncclGetErrorString"));
    private static readonly Lazy<IntPtr> PGetUniqueId = new(() => Export("ncclGetUniqueId"));
    private static readonly Lazy<IntPtr> PCommInitRank = new(() => Export("ncclCommInitRank"));
    private static readonly Lazy<IntPtr> PCommDestroy = new(() => Export("ncclCommDestroy"));
    private static readonly Lazy<IntPtr> PCommAbort = new(() => Export("ncclCommAbort"));
    private static readonly Lazy<IntPtr> PCommGetAsyncError = new(() => Export("ncclCommGetAsyncError"));
    private static readonly Lazy<IntPtr> PAllReduce = new(() => Export("ncclAllReduce"));
    private static readonly Lazy<IntPtr> PAllGather = new(() => Export("ncclAllGather"));
    private static readonly Lazy<IntPtr> PBroadcast = new(() => Export("ncclBroadcast"));
    private static readonly Lazy<IntPtr> PReduceScatter = new(() => Export("ncclReduceScatter"));
    private static readonly Lazy<IntPtr> PGroupStart = new(() => Export("ncclGroupStart"));
    private static readonly Lazy<IntPtr> PGroupEnd = new(() => Export("ncclGroupEnd"));

    public static int Version()
    {
        int v;
        Check(((delegate* unmanaged<int*, int>)PGetVersion.Value)(&v), "ncclGetVersion");
        return v;
    }

    public static string ErrorString(int result)
    {
        var p = ((delegate* unmanaged<int, IntPtr>)PGetErrorString.Value)(result);
        return p == IntPtr.Zero ? $"NCCL error {result}" : Marshal.PtrToStringAnsi(p) ?? $"NCCL error {result}";
    }

    public static void Check(int result, string call)
    {
        if (result != 0) throw new InvalidOperationException($"{call} failed: {ErrorString(result)} (ncclResult_t {result}). Set NCCL_DEBUG=INFO for NCCL's own diagnostics.");
    }

    public static NcclUniqueId GetUniqueId()
    {
        NcclUniqueId id;
        Check(((delegate* unmanaged<NcclUniqueId*, int>)PGetUniqueId.Value)(&id), "ncclGetUniqueId");
        return id;
    }

    public static IntPtr CommInitRank(int worldSize, NcclUniqueId id, int rank)
    {
        IntPtr comm;
        Check(((delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int>)PCommInitRank.Value)(&comm, worldSize, id, rank), "ncclCommInitRank");
        return comm;
    }

    public static int CommDestroy(IntPtr comm) => ((delegate* unmanaged<IntPtr, int>)PCommDestroy.Value)(comm);
    public static int CommAbort(IntPtr comm) => ((delegate* unmanaged<IntPtr, int>)PCommAbort.Value)(comm);

    public static int CommGetAsyncError(IntPtr comm)
    {
        int error;
        int rc = ((delegate* unmanaged<IntPtr, int*, int>)PCommGetAsyncError.Value)(comm, &error);
        return rc != 0 ? rc : error;
    }

    public static void AllReduce(IntPtr send, IntPtr recv, ulong count, int dtype, int op, IntPtr comm, IntPtr stream)
        => Check(((delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)PAllReduce.Value)(send, recv, (nuint)count, dtype, op, comm, stream), "ncclAllReduce");

    public static void AllGather(IntPtr send, IntPtr recv, ulong sendCount, int dtype, IntPtr comm, IntPtr stream)
        => Check(((delegate* unmanaged<IntPtr, IntPtr, nuint, int, IntPtr, IntPtr, int>)PAllGather.Value)(send, recv, (nuint)sendCount, dtype, comm, stream), "ncclAllGather");

    public static void Broadcast(IntPtr send, IntPtr recv, ulong count, int dtype, int root, IntPtr comm, IntPtr stream)
        => Check(((delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)PBroadcast.Value)(send, recv, (nuint)count, dtype, root, comm, stream), "ncclBroadcast");

    public static void ReduceScatter(IntPtr send, IntPtr recv, ulong recvCount, int dtype, int op, IntPtr comm, IntPtr stream)
        => Check(((delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)PReduceScatter.Value)(send, recv, (nuint)recvCount, dtype, op, comm, stream), "ncclReduceScatter");

    public static void GroupStart() => Check(((delegate* unmanaged<int>)PGroupStart.Value)(), "ncclGroupStart");
    public static void GroupEnd() => Check(((delegate* unmanaged<int>)PGroupEnd.Value)(), "ncclGroupEnd");

    /// <summary>NCCL's data type for a TorchSharp dtype.</summary>
    public static int DataType(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => Float32,
        ScalarType.BFloat16 => BFloat16,
        ScalarType.Float16 => Float16,
        ScalarType.Float64 => Float64,
        ScalarType.Int32 => Int32,
        ScalarType.Int64 => Int64,
        ScalarType.Int8 => Int8,
        ScalarType.Bool or ScalarType.Byte => Uint8,
        _ => throw new NotSupportedException($"NCCL collectives do not support {dtype} tensors here; convert to float32, bfloat16, float16, float64, int32 or int64."),
    };
}

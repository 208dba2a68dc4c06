using System.Runtime.InteropServices;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// Peak CUDA memory without PyTorch's Python API: TorchSharp exposes no allocator statistics, so the benchmark runs
/// libtorch with PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync and reads the high-water mark of the device's default
/// stream-ordered memory pool (cudaMemPoolAttrUsedMemHigh) through the CUDA runtime that libtorch already loaded.
/// </summary>
internal sealed class CudaMemoryProbe
{
    private const int AttrUsedMemCurrent = 7, AttrUsedMemHigh = 8;
    private delegate int GetDefaultPool(out IntPtr pool, int device);
    private delegate int GetAttribute(IntPtr pool, int attribute, out ulong value);
    private delegate int SetAttribute(IntPtr pool, int attribute, ref ulong value);

    private readonly IntPtr _pool;
    private readonly GetAttribute? _get;
    private readonly SetAttribute? _set;

    public string? Unavailable { get; }

    public CudaMemoryProbe(int device)
    {
        if (!string.Equals(Environment.GetEnvironmentVariable("PYTORCH_CUDA_ALLOC_CONF")?.Replace(" ", ""), "backend:cudaMallocAsync", StringComparison.Ordinal))
        {
            Unavailable = "peak memory needs PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync";
            return;
        }
        foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
        {
            if (!NativeLibrary.TryLoad(name, out var lib)) continue;
            var getPool = Marshal.GetDelegateForFunctionPointer<GetDefaultPool>(NativeLibrary.GetExport(lib, "cudaDeviceGetDefaultMemPool"));
            _get = Marshal.GetDelegateForFunctionPointer<GetAttribute>(NativeLibrary.GetExport(lib, "cudaMemPoolGetAttribute"));
            _set = Marshal.GetDelegateForFunctionPointer<SetAttribute>(NativeLibrary.GetExport(lib, "cudaMemPoolSetAttribute"));
            int rc = getPool(out _pool, device);
            if (rc == 0) return;
            Unavailable = $"cudaDeviceGetDefaultMemPool returned {rc}";
            return;
        }
        Unavailable = "no libcudart found";
    }

    /// <summary>Resets the high-water mark to the memory in use now.</summary>
    public void ResetPeak()
    {
        if (Unavailable != null) return;
        ulong zero = 0;
        _set!(_pool, AttrUsedMemHigh, ref zero);
    }

    /// <summary>Peak bytes in use since the last reset, or null when unavailable.</summary>
    public long? PeakBytes()
    {
        if (Unavailable != null) return null;
        return _get!(_pool, AttrUsedMemHigh, out var value) == 0 ? (long)value : null;
    }

    public long? CurrentBytes()
    {
        if (Unavailable != null) return null;
        return _get!(_pool, AttrUsedMemCurrent, out var value) == 0 ? (long)value : null;
    }
}

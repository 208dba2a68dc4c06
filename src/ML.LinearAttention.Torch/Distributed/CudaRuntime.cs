using System.Runtime.InteropServices;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// The few CUDA runtime calls the NCCL group needs (current device, events to time collectives on the stream), through
/// the libcudart that libtorch already loaded (same soname, so the same instance and context).
/// </summary>
internal static unsafe class CudaRuntime
{
    private static readonly Lazy<IntPtr> Library = new(() =>
    {
        foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
            if (NativeLibrary.TryLoad(name, out var lib)) return lib;
        throw new DllNotFoundException("The CUDA runtime (libcudart.so.13 or .12) was not found on LD_LIBRARY_PATH; it ships with PyTorch's CUDA wheels (site-packages/nvidia/cu13/lib or nvidia/cuda_runtime/lib).");
    });

    private static IntPtr F(string name) => NativeLibrary.GetExport(Library.Value, name);

    private static readonly Lazy<IntPtr> PSetDevice = new(() => F("cudaSetDevice"));
    private static readonly Lazy<IntPtr> PEventCreate = new(() => F("cudaEventCreate"));
    private static readonly Lazy<IntPtr> PEventRecord = new(() => F("cudaEventRecord"));
    private static readonly Lazy<IntPtr> PEventSynchronize = new(() => F("cudaEventSynchronize"));
    private static readonly Lazy<IntPtr> PEventElapsedTime = new(() => F("cudaEventElapsedTime"));
    private static readonly Lazy<IntPtr> PEventDestroy = new(() => F("cudaEventDestroy"));

    private static void Check(int rc, string call)
    {
        if (rc != 0) throw new InvalidOperationException($"{call} failed with cudaError_t {rc}.");
    }

    public static void SetDevice(int device) => Check(((delegate* unmanaged<int, int>)PSetDevice.Value)(device), "cudaSetDevice");

    public static IntPtr RecordEvent(IntPtr stream)
    {
        IntPtr e;
        Check(((delegate* unmanaged<IntPtr*, int>)PEventCreate.Value)(&e), "cudaEventCreate");
        Check(((delegate* unmanaged<IntPtr, IntPtr, int>)PEventRecord.Value)(e, stream), "cudaEventRecord");
        return e;
    }

    /// <summary>Milliseconds between two recorded events (waits for the second), then frees both.</summary>
    public static float ElapsedAndFree(IntPtr start, IntPtr end)
    {
        float ms;
        Check(((delegate* unmanaged<IntPtr, int>)PEventSynchronize.Value)(end), "cudaEventSynchronize");
        Check(((delegate* unmanaged<float*, IntPtr, IntPtr, int>)PEventElapsedTime.Value)(&ms, start, end), "cudaEventElapsedTime");
        ((delegate* unmanaged<IntPtr, int>)PEventDestroy.Value)(start);
        ((delegate* unmanaged<IntPtr, int>)PEventDestroy.Value)(end);
        return ms;
    }
}

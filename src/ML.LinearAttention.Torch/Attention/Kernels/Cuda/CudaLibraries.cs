using System.Runtime.InteropServices;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// The CUDA driver (libcuda) and NVRTC, loaded at run time through <see cref="NativeLibrary"/> so that a missing
/// library is a clear fallback message, not a load failure. Lookup: the plain sonames (libnvrtc.so.13, .so.12,
/// libnvrtc.so; libcuda.so.1) through the system loader (LD_LIBRARY_PATH), then the file named by the environment
/// variable <c>ML_LINEARATTENTION_NVRTC</c> (or <c>ML_LINEARATTENTION_CUDA_DRIVER</c>), then CUDA_HOME/lib64 and
/// /usr/local/cuda/lib64. On Windows: nvrtc64_130_0.dll / nvrtc64_120_0.dll and nvcuda.dll.
/// </summary>
internal static unsafe class CudaLibraries
{
    public const string NvrtcOverrideVariable = "ML_LINEARATTENTION_NVRTC";
    public const string DriverOverrideVariable = "ML_LINEARATTENTION_CUDA_DRIVER";

    // NVRTC
    public static delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int> nvrtcCreateProgram;
    public static delegate* unmanaged<IntPtr, int, byte**, int> nvrtcCompileProgram;
    public static delegate* unmanaged<IntPtr, nuint*, int> nvrtcGetProgramLogSize;
    public static delegate* unmanaged<IntPtr, byte*, int> nvrtcGetProgramLog;
    public static delegate* unmanaged<IntPtr, nuint*, int> nvrtcGetCUBINSize;
    public static delegate* unmanaged<IntPtr, byte*, int> nvrtcGetCUBIN;
    public static delegate* unmanaged<IntPtr*, int> nvrtcDestroyProgram;
    public static delegate* unmanaged<int*, int*, int> nvrtcVersion;
    public static delegate* unmanaged<int, byte*> nvrtcGetErrorString;

    // Driver
    public static delegate* unmanaged<uint, int> cuInit;
    public static delegate* unmanaged<int*, int, int> cuDeviceGet;
    public static delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
    public static delegate* unmanaged<IntPtr*, int, int> cuDevicePrimaryCtxRetain;
    public static delegate* unmanaged<IntPtr, int> cuCtxSetCurrent;
    public static delegate* unmanaged<IntPtr*, void*, int> cuModuleLoadData;
    public static delegate* unmanaged<IntPtr*, IntPtr, byte*, int> cuModuleGetFunction;
    public static delegate* unmanaged<IntPtr, int, int, int> cuFuncSetAttribute;
    public static delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> cuLaunchKernel;
    public static delegate* unmanaged<int, byte**, int> cuGetErrorString;
    public static delegate* unmanaged<IntPtr*, uint, int> cuEventCreate;
    public static delegate* unmanaged<IntPtr, IntPtr, int> cuEventRecord;
    public static delegate* unmanaged<IntPtr, int> cuEventSynchronize;
    public static delegate* unmanaged<float*, IntPtr, IntPtr, int> cuEventElapsedTime;
    public static delegate* unmanaged<IntPtr, int> cuEventDestroy;
    public static delegate* unmanaged<int*, IntPtr, int, nuint, int> cuOccupancyMaxActiveBlocksPerMultiprocessor;

    private static readonly object Gate = new();
    private static bool _tried;
    private static string? _failure;

    /// <summary>Where NVRTC was loaded from (for messages), once loaded.</summary>
    public static string? NvrtcPath { get; private set; }

    /// <summary>Loads both libraries once; null when loaded, else why not (naming the library and the fix).</summary>
    public static string? EnsureLoaded()
    {
        lock (Gate)
        {
            if (_tried) return _failure;
            _tried = true;
            try { _failure = Load(); }
            catch (Exception e) { _failure = "the CUDA driver or NVRTC could not be bound: " + e.Message; }
            return _failure;
        }
    }

    private static string? Load()
    {
        bool windows = OperatingSystem.IsWindows();
        var driverNames = windows ? new[] { "nvcuda.dll" } : new[] { "libcuda.so.1", "libcuda.so" };
        var nvrtcNames = windows ? new[] { "nvrtc64_130_0.dll", "nvrtc64_120_0.dll" } : new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so" };
        var driver = TryLoad(driverNames, DriverOverrideVariable, out _);
        if (driver == IntPtr.Zero)
            return $"{driverNames[0]} (the CUDA driver) was not found: install the NVIDIA driver, or set {DriverOverrideVariable} to its path.";
        var nvrtc = TryLoad(nvrtcNames, NvrtcOverrideVariable, out var nvrtcPath);
        if (nvrtc == IntPtr.Zero)
            return $"{nvrtcNames[0]} (NVRTC) was not found: install the CUDA toolkit's NVRTC or the pip package nvidia-cuda-nvrtc, "
                 + $"add its lib folder to LD_LIBRARY_PATH, or set {NvrtcOverrideVariable} to the library's path.";
        NvrtcPath = nvrtcPath;
        BindNvrtc(nvrtc);
        cuInit = (delegate* unmanaged<uint, int>)Export(driver, "cuInit");
        cuDeviceGet = (delegate* unmanaged<int*, int, int>)Export(driver, "cuDeviceGet");
        cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)Export(driver, "cuDeviceGetAttribute");
        cuDevicePrimaryCtxRetain = (delegate* unmanaged<IntPtr*, int, int>)Export(driver, "cuDevicePrimaryCtxRetain");
        cuCtxSetCurrent = (delegate* unmanaged<IntPtr, int>)Export(driver, "cuCtxSetCurrent");
        cuModuleLoadData = (delegate* unmanaged<IntPtr*, void*, int>)Export(driver, "cuModuleLoadData");
        cuModuleGetFunction = (delegate* unmanaged<IntPtr*, IntPtr, byte*, int>)Export(driver, "cuModuleGetFunction");
        cuFuncSetAttribute = (delegate* unmanaged<IntPtr, int, int, int>)Export(driver, "cuFuncSetAttribute");
        cuLaunchKernel = (delegate* unmanaged<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)Export(driver, "cuLaunchKernel");
        cuGetErrorString = (delegate* unmanaged<int, byte**, int>)Export(driver, "cuGetErrorString");
        cuEventCreate = (delegate* unmanaged<IntPtr*, uint, int>)Export(driver, "cuEventCreate");
        cuEventRecord = (delegate* unmanaged<IntPtr, IntPtr, int>)Export(driver, "cuEventRecord");
        cuEventSynchronize = (delegate* unmanaged<IntPtr, int>)Export(driver, "cuEventSynchronize");
        cuEventElapsedTime = (delegate* unmanaged<float*, IntPtr, IntPtr, int>)Export(driver, "cuEventElapsedTime");
        cuEventDestroy = (delegate* unmanaged<IntPtr, int>)Export(driver, "cuEventDestroy_v2");
        cuOccupancyMaxActiveBlocksPerMultiprocessor = (delegate* unmanaged<int*, IntPtr, int, nuint, int>)Export(driver, "cuOccupancyMaxActiveBlocksPerMultiprocessor");
        return null;
    }

    /// <summary>Loads NVRTC only (compile checks on machines without a GPU driver); null when loaded, else why not.</summary>
    public static string? EnsureNvrtcOnly()
    {
        lock (Gate)
        {
            if (nvrtcCreateProgram != null) return null;
            var nvrtc = TryLoad(OperatingSystem.IsWindows() ? new[] { "nvrtc64_130_0.dll", "nvrtc64_120_0.dll" } : new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so" }, NvrtcOverrideVariable, out var path);
            if (nvrtc == IntPtr.Zero) return $"NVRTC was not found (set {NvrtcOverrideVariable} to libnvrtc's path).";
            NvrtcPath = path;
            BindNvrtc(nvrtc);
            return null;
        }
    }

    private static void BindNvrtc(IntPtr nvrtc)
    {
        nvrtcCreateProgram = (delegate* unmanaged<IntPtr*, byte*, byte*, int, byte**, byte**, int>)Export(nvrtc, "nvrtcCreateProgram");
        nvrtcCompileProgram = (delegate* unmanaged<IntPtr, int, byte**, int>)Export(nvrtc, "nvrtcCompileProgram");
        nvrtcGetProgramLogSize = (delegate* unmanaged<IntPtr, nuint*, int>)Export(nvrtc, "nvrtcGetProgramLogSize");
        nvrtcGetProgramLog = (delegate* unmanaged<IntPtr, byte*, int>)Export(nvrtc, "nvrtcGetProgramLog");
        nvrtcGetCUBINSize = (delegate* unmanaged<IntPtr, nuint*, int>)Export(nvrtc, "nvrtcGetCUBINSize");
        nvrtcGetCUBIN = (delegate* unmanaged<IntPtr, byte*, int>)Export(nvrtc, "nvrtcGetCUBIN");
        nvrtcDestroyProgram = (delegate* unmanaged<IntPtr*, int>)Export(nvrtc, "nvrtcDestroyProgram");
        nvrtcVersion = (delegate* unmanaged<int*, int*, int>)Export(nvrtc, "nvrtcVersion");
        nvrtcGetErrorString = (delegate* unmanaged<int, byte*>)Export(nvrtc, "nvrtcGetErrorString");
    }

    private static IntPtr TryLoad(string[] names, string overrideVariable, out string? loadedFrom)
    {
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle)) { loadedFrom = name; return handle; }
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable(overrideVariable) is { Length: > 0 } path) candidates.Add(path);
        foreach (var root in new[] { Environment.GetEnvironmentVariable("CUDA_HOME"), Environment.GetEnvironmentVariable("CUDA_PATH"), "/usr/local/cuda" })
            if (!string.IsNullOrEmpty(root))
                foreach (var name in names)
                {
                    candidates.Add(Path.Combine(root, "lib64", name));
                    candidates.Add(Path.Combine(root, "bin", name));
                }
        foreach (var candidate in candidates)
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle)) { loadedFrom = candidate; return handle; }
        loadedFrom = null;
        return IntPtr.Zero;
    }

    private static IntPtr Export(IntPtr library, string name) =>
        NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new EntryPointNotFoundException($"{name} is missing from the loaded library (too old a CUDA driver or NVRTC?).");

    /// <summary>Throws with the driver's error name when <paramref name="result"/> is not CUDA_SUCCESS.</summary>
    public static void Check(int result, string what)
    {
        if (result == 0) return;
        string text = "";
        byte* message = null;
        if (cuGetErrorString != null && cuGetErrorString(result, &message) == 0 && message != null)
            text = Marshal.PtrToStringAnsi((IntPtr)message) ?? "";
        throw new InvalidOperationException($"CUDA driver call {what} failed with error {result} {text}.");
    }

    /// <summary>Throws with NVRTC's error name when <paramref name="result"/> is not NVRTC_SUCCESS.</summary>
    public static void CheckNvrtc(int result, string what, string? log = null)
    {
        if (result == 0) return;
        string text = nvrtcGetErrorString != null ? Marshal.PtrToStringAnsi((IntPtr)nvrtcGetErrorString(result)) ?? "" : "";
        throw new InvalidOperationException($"NVRTC {what} failed with error {result} {text}." + (log is null ? "" : "\n" + log));
    }
}

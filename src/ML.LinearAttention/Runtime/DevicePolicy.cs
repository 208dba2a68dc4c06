using TorchSharp;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>What the process can see of CUDA. Replaceable in tests.</summary>
public interface ICudaProbe
{
    /// <summary>True when libtorch reports a usable CUDA runtime and device.</summary>
    bool IsAvailable { get; }
    /// <summary>Number of visible CUDA devices.</summary>
    int DeviceCount { get; }
    /// <summary>True when a CUDA build of libtorch is loaded or loadable (false with TorchSharp-cpu).</summary>
    bool CudaLibtorchPresent { get; }
}

/// <summary>The real probe: asks libtorch.</summary>
public sealed class TorchCudaProbe : ICudaProbe
{
    public static readonly TorchCudaProbe Instance = new();
    public bool IsAvailable { get { TorchRuntime.EnsureLoaded(); return torch.cuda.is_available(); } }
    public int DeviceCount { get { TorchRuntime.EnsureLoaded(); return torch.cuda.is_available() ? torch.cuda.device_count() : 0; } }
    public bool CudaLibtorchPresent => TorchRuntime.CudaLibraryPresent();
}

/// <summary>
/// The one place that maps ML.NET's device settings to a torch device, the way ML.NET users know them:
/// <list type="bullet">
/// <item><c>MLContext.GpuDeviceId == null</c>: CPU.</item>
/// <item>set and CUDA available: that GPU, <c>cuda:N</c> (ML.NET itself ignores the index; we honour it).</item>
/// <item>set, no CUDA, <c>FallbackToCpu == false</c>: an exception naming what is missing and how to fix it.</item>
/// <item>set, no CUDA, fallback allowed: CPU, with a warning in the log.</item>
/// </list>
/// </summary>
public static class DevicePolicy
{
    /// <summary>Picks the device for an MLContext and sets the CPU thread count (null = all cores).</summary>
    public static torch.Device Resolve(MLContext mlContext, int? cpuThreads = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        TorchRuntime.EnsureLoaded();
        TorchRuntime.SetCpuThreads(cpuThreads);
        return Resolve(mlContext.GpuDeviceId, mlContext.FallbackToCpu, TorchCudaProbe.Instance,
            warning => MLContextLog.Warning(mlContext, "DevicePolicy", warning));
    }

    /// <summary>The policy itself, free of MLContext so each branch is testable.</summary>
    public static torch.Device Resolve(int? gpuDeviceId, bool fallbackToCpu, ICudaProbe probe, Action<string> warn)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(warn);
        if (gpuDeviceId == null) return torch.CPU;
        if (gpuDeviceId < 0)
            throw new ArgumentOutOfRangeException(nameof(gpuDeviceId), gpuDeviceId,
                $"MLContext.GpuDeviceId is {gpuDeviceId}; use a GPU index from 0, or null for the CPU.");

        if (probe.IsAvailable)
        {
            int count = probe.DeviceCount;
            if (gpuDeviceId < count) return new torch.Device(DeviceType.CUDA, gpuDeviceId.Value);
            string outOfRange = $"MLContext.GpuDeviceId is {gpuDeviceId} but only {count} CUDA device(s) are visible (indices 0..{count - 1}). " +
                                "Set GpuDeviceId to one of those, or check CUDA_VISIBLE_DEVICES.";
            if (!fallbackToCpu) throw new InvalidOperationException(outOfRange);
            warn(outOfRange + " Falling back to the CPU because MLContext.FallbackToCpu is true.");
            return torch.CPU;
        }

        string reason = DescribeMissingCuda(probe);
        if (!fallbackToCpu)
            throw new InvalidOperationException(
                $"MLContext.GpuDeviceId is {gpuDeviceId} and MLContext.FallbackToCpu is false, but CUDA is not available: {reason} " +
                "Either fix that, set MLContext.FallbackToCpu = true to train on the CPU, or set GpuDeviceId = null.");
        warn($"MLContext.GpuDeviceId is {gpuDeviceId} but CUDA is not available ({reason}) Running on the CPU because MLContext.FallbackToCpu is true.");
        return torch.CPU;
    }

    /// <summary>Why CUDA is unavailable in this process, and how to fix it (for tools and samples).</summary>
    public static string DescribeMissingCudaForSamples() => DescribeMissingCuda(TorchCudaProbe.Instance);

    internal static string DescribeMissingCuda(ICudaProbe probe)
        => probe.CudaLibtorchPresent
            ? "a CUDA build of libtorch is loaded but it sees no usable GPU (check the NVIDIA driver with nvidia-smi, CUDA_VISIBLE_DEVICES, and that the driver supports libtorch's CUDA 12.8)."
            : "the application runs on a CPU-only libtorch (package TorchSharp-cpu). Reference TorchSharp-cuda-linux 0.107.0 from nuget.org " +
              "(in this repository: build with -p:TorchBackend=cuda), or build with -p:TorchBackend=external and put a CUDA PyTorch's torch/lib on LD_LIBRARY_PATH.";
}

/// <summary>
/// The device an MLContext asks for (<c>GpuDeviceId</c>, <c>FallbackToCpu</c>) cannot be used on this machine, e.g. a model
/// loaded for a GPU on a machine without CUDA. The file is fine: change the settings or the machine, not the model.
/// </summary>
public sealed class DeviceUnavailableException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>GPU milliseconds per run of a piece of work, and the host's milliseconds to enqueue it.</summary>
/// <param name="GpuMilliseconds">Device time per run between two CUDA events, with the host's launch overhead hidden.</param>
/// <param name="HostMilliseconds">Host time per run to enqueue the work (the launch overhead that was hidden).</param>
/// <param name="HostBound">True when the host could not stay ahead of the GPU (it synchronized, or enqueued more slowly
/// than the GPU ran), so <paramref name="GpuMilliseconds"/> includes idle gaps.</param>
/// <remarks><paramref name="HostMilliseconds"/> includes waits on a full launch queue, which hide no GPU time.</remarks>
internal sealed record GpuTiming(double GpuMilliseconds, double HostMilliseconds, bool HostBound);

/// <summary>
/// Measures GPU time the way CUTLASS's profiler and nvbench do: a spin kernel holds the legacy default stream while the
/// host enqueues every repetition, then CUDA events around the repetitions give device time alone, free of the host's
/// launch overhead (which TorchSharp's managed autograd functions add and a training loop overlaps with other layers'
/// GPU work). Work must run on the legacy default stream (TorchSharp's, and the fused kernels').
/// </summary>
internal static unsafe class GpuTimer
{
    private static readonly Dictionary<int, IntPtr> Spins = new();
    private static readonly object Gate = new();

    /// <summary>
    /// Runs <paramref name="step"/> <paramref name="repetitions"/> times behind a spin kernel and returns the GPU time per
    /// run. The hold starts at <paramref name="holdMilliseconds"/>; when the host was slower it is retried once with a hold
    /// that covers the host's time (up to 4 s).
    /// </summary>
    public static GpuTiming Measure(Device device, Action step, int repetitions, double holdMilliseconds = 50)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        if (FusedLinearAttention.UnavailableReason(device) is { } reason)
            throw new InvalidOperationException("GPU timing needs the CUDA driver and NVRTC: " + reason);
        int ordinal = device.index < 0 ? 0 : device.index;
        var spin = Spin(ordinal);
        IntPtr start = IntPtr.Zero, end = IntPtr.Zero;
        try
        {
            CudaLibraries.Check(CudaLibraries.cuEventCreate(&start, 0), "cuEventCreate");
            CudaLibraries.Check(CudaLibraries.cuEventCreate(&end, 0), "cuEventCreate");
            double hold = holdMilliseconds;
            bool retried = false;
            while (true)
            {
                torch.cuda.synchronize(device);
                FusedModuleCache.MakeCurrent(FusedModuleCache.Device(ordinal).Context);
                FusedModuleCache.Launch(spin, 1, 1, 0, (long)(hold * 1e6));
                CudaLibraries.Check(CudaLibraries.cuEventRecord(start, IntPtr.Zero), "cuEventRecord");
                var watch = Stopwatch.StartNew();
                for (int i = 0; i < repetitions; i++) step();
                double host = watch.Elapsed.TotalMilliseconds;
                FusedModuleCache.MakeCurrent(FusedModuleCache.Device(ordinal).Context);
                CudaLibraries.Check(CudaLibraries.cuEventRecord(end, IntPtr.Zero), "cuEventRecord");
                watch.Restart();
                CudaLibraries.Check(CudaLibraries.cuEventSynchronize(end), "cuEventSynchronize");
                double tail = watch.Elapsed.TotalMilliseconds;
                float ms;
                CudaLibraries.Check(CudaLibraries.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
                bool hostBound = LeftGaps(host, hold, tail, ms, repetitions);
                // One retry with a hold that covers the measured enqueue time; a step that synchronizes the host waits
                // for the spin whatever its length, so a second failure is reported instead of retried.
                if (!hostBound || retried || hold >= 4000)
                    return new GpuTiming(ms / repetitions, host / repetitions, hostBound);
                retried = true;
                hold = Math.Min(4000, host * 2.5 + 50);
            }
        }
        finally
        {
            if (start != IntPtr.Zero) CudaLibraries.cuEventDestroy(start);
            if (end != IntPtr.Zero) CudaLibraries.cuEventDestroy(end);
        }
    }

    /// <summary>
    /// Whether the GPU may have idled between runs. Not when every run was enqueued while the spin held the GPU, nor when
    /// the GPU still had two runs or more of queued work once the host was done: the host then outran the GPU and only
    /// waited on the launch queue's depth (a step of hundreds of kernels fills it). A host slower than the GPU, or a
    /// step that synchronizes, leaves the queue nearly empty at the end instead. A step of more kernels than the queue
    /// holds (about a thousand: the chunk loops at long T) leaves less than two runs queued either way, so it is reported
    /// as possibly gapped even when the GPU never idled.
    /// </summary>
    /// <param name="hostMs">Host milliseconds to enqueue all runs.</param>
    /// <param name="holdMs">Milliseconds the spin kernel held the GPU.</param>
    /// <param name="tailMs">Host milliseconds from the last enqueue to the end event's completion.</param>
    /// <param name="gpuMs">GPU milliseconds of all runs.</param>
    /// <param name="repetitions">How many runs were timed.</param>
    internal static bool LeftGaps(double hostMs, double holdMs, double tailMs, double gpuMs, int repetitions) =>
        hostMs > 0.8 * holdMs && tailMs < 2 * gpuMs / repetitions;

    /// <summary>The spin kernel's CUDA C (gpu_timer_spin.cu, embedded in this assembly).</summary>
    private static string SpinSource()
    {
        using var stream = typeof(GpuTimer).Assembly.GetManifestResourceStream("ML.LinearAttention.Samples.gpu_timer_spin.cu")
            ?? throw new InvalidOperationException("gpu_timer_spin.cu is not embedded in the samples assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static IntPtr Spin(int ordinal)
    {
        lock (Gate)
        {
            if (Spins.TryGetValue(ordinal, out var f)) return f;
            var info = FusedModuleCache.Device(ordinal);
            FusedModuleCache.MakeCurrent(info.Context);
            var cubin = FusedModuleCache.CompileProgram("gpu_timer_spin.cu", SpinSource(), [],
                [$"--gpu-architecture=sm_{info.Major}{info.Minor}", "--std=c++17"], "compilation of GpuTimer's spin kernel", out _);
            f = FusedModuleCache.LoadFunction(cubin, "spin", 0);
            Spins[ordinal] = f;
            return f;
        }
    }
}

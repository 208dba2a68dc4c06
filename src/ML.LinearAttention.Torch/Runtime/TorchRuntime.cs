using System.Runtime.InteropServices;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>
/// Loads TorchSharp's native backend once and turns the usual native-load failures into errors that say what is
/// missing and how to fix it.
/// </summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool _loaded;

    /// <summary>Loads libtorch (CPU or whatever backend the application bundles). Throws a clear error when it cannot.</summary>
    public static void EnsureLoaded()
    {
        if (_loaded) return;
        lock (Gate)
        {
            if (_loaded) return;
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException or InvalidOperationException)
            {
                throw new InvalidOperationException(DescribeLoadFailure(e), e);
            }
            _loaded = true;
        }
    }

    /// <summary>Sets the number of CPU threads libtorch uses; null means all cores.</summary>
    public static void SetCpuThreads(int? threads)
    {
        if (threads is <= 0)
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "CPU thread count must be positive, or null for all cores.");
        EnsureLoaded();
        int wanted = threads ?? Environment.ProcessorCount;
        if (torch.get_num_threads() != wanted) torch.set_num_threads(wanted);
    }

    internal static string DescribeLoadFailure(Exception e)
    {
        string all = e.ToString();
        if (all.Contains("GLIBCXX_", StringComparison.Ordinal))
            return "TorchSharp's native library (libLibTorchSharp.so) could not load because the system libstdc++ lacks a version it asks for " +
                   "(\"version `GLIBCXX_3.4.32' not found\"). ML.LinearAttention's build step fixes the copy in your output folder: rebuild the " +
                   "application with `dotnet build` (or `dotnet publish`) so that step runs, and make sure MLLinearAttentionPatchTorchSharp is not set " +
                   "to false. If the app was copied from another machine, build or publish it on this one.";
        if (all.Contains("doesn't contain a reference to libtorch", StringComparison.Ordinal) || all.Contains("LibTorchSharp", StringComparison.Ordinal))
            return "libtorch could not be loaded. The application must reference a libtorch backend: add the NuGet package TorchSharp-cpu " +
                   "(CPU) or TorchSharp-cuda-linux (NVIDIA GPU, from nuget.org), or, for an external PyTorch install, put its torch/lib " +
                   "folder on LD_LIBRARY_PATH. Loader details: " + FirstLine(e);
        return "TorchSharp failed to initialise: " + FirstLine(e);
    }

    private static string FirstLine(Exception e)
    {
        var message = e.InnerException?.Message ?? e.Message;
        int newline = message.IndexOf('\n');
        return newline < 0 ? message : message[..newline];
    }

    /// <summary>True when a CUDA build of libtorch is loadable in this process.</summary>
    internal static bool CudaLibraryPresent()
        => NativeLibrary.TryLoad("libtorch_cuda.so", typeof(TorchRuntime).Assembly, null, out _) ||
           NativeLibrary.TryLoad("torch_cuda", typeof(TorchRuntime).Assembly, null, out _);
}

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

    /// <summary>The MSBuild line an application that references the library's project (not its package) adds to get
    /// the build step that fixes TorchSharp's native library; NuGet applies buildTransitive/ to package references only.</summary>
    internal const string BuildImportLine =
        "<Import Project=\"<your ML.LinearAttention checkout>/src/ML.LinearAttention.Torch/buildTransitive/ML.LinearAttention.Torch.targets\" />";

    internal static string DescribeLoadFailure(Exception e) => DescribeLoadFailure(e, NativeLoadError(TorchSharpNativeCandidates()));

    /// <param name="e">What TorchSharp threw.</param>
    /// <param name="nativeLoadError">The dynamic loader's own error for libLibTorchSharp.so, if loading it fails:
    /// TorchSharp reports any failure there as a missing libtorch package, which hides the GLIBCXX cause.</param>
    internal static string DescribeLoadFailure(Exception e, string? nativeLoadError)
    {
        string all = e + "\n" + nativeLoadError;
        if (all.Contains("GLIBCXX_", StringComparison.Ordinal))
            return "TorchSharp's native library (libLibTorchSharp.so) could not load because the system libstdc++ lacks a version it asks for " +
                   "(\"version `GLIBCXX_3.4.32' not found\"); a message about a missing libtorch package reference names the wrong cause. " +
                   "ML.LinearAttention's build step fixes the copy in your output folder. A NuGet package reference to ML.LinearAttention runs it " +
                   "on every build; a ProjectReference does not (NuGet's buildTransitive/ applies to packages only): add " + BuildImportLine +
                   " to the application's .csproj (or its Directory.Build.targets) and rebuild with `dotnet build` or `dotnet publish`. " +
                   "MLLinearAttentionPatchTorchSharp must not be set to false, and an app copied from another machine must be built or " +
                   "published on this one." + (nativeLoadError is null ? "" : " Loader details: " + nativeLoadError.ReplaceLineEndings(" "));
        if (all.Contains("doesn't contain a reference to libtorch", StringComparison.Ordinal) || all.Contains("LibTorchSharp", StringComparison.Ordinal))
            return "libtorch could not be loaded. The application must reference a libtorch backend: add the NuGet package TorchSharp-cpu " +
                   "(CPU) or TorchSharp-cuda-linux (NVIDIA GPU, from nuget.org), or, for an external PyTorch install, put its torch/lib " +
                   "folder on LD_LIBRARY_PATH. Loader details: " + FirstLine(e);
        return "TorchSharp failed to initialise: " + FirstLine(e);
    }

    /// <summary>Where an application's build puts libLibTorchSharp.so (Linux only; TorchSharp loads one of these).</summary>
    internal static IEnumerable<string> TorchSharpNativeCandidates()
    {
        if (!OperatingSystem.IsLinux()) return [];
        var dir = AppContext.BaseDirectory;
        return new[] { "", "runtimes/linux-x64/native", "runtimes/linux-arm64/native", "cpu" }
            .Select(sub => Path.Combine(dir, sub, "libLibTorchSharp.so")).Where(File.Exists);
    }

    /// <summary>The dynamic loader's message for the first of <paramref name="paths"/> that fails to load; null when none fails.
    /// Only called after TorchSharp failed, so a library that does load here was not the problem.</summary>
    internal static string? NativeLoadError(IEnumerable<string> paths)
    {
        foreach (var path in paths)
        {
            try { NativeLibrary.Load(path); }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException) { return e.Message; }
        }
        return null;
    }

    private static string FirstLine(Exception e) => FirstLine(e.InnerException?.Message ?? e.Message);

    private static string FirstLine(string message)
    {
        int newline = message.IndexOf('\n');
        return newline < 0 ? message : message[..newline];
    }

    /// <summary>True when a CUDA build of libtorch is loadable in this process.</summary>
    internal static bool CudaLibraryPresent()
        => NativeLibrary.TryLoad("libtorch_cuda.so", typeof(TorchRuntime).Assembly, null, out _) ||
           NativeLibrary.TryLoad("torch_cuda", typeof(TorchRuntime).Assembly, null, out _);
}

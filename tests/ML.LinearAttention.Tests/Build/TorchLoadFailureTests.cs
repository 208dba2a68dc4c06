using Microsoft.ML.LinearAttention.Runtime;
using MLLinearAttention.Build;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>
/// An application that references the library's project (not its package) misses the build step that fixes
/// libLibTorchSharp.so; TorchSharp then blames a missing libtorch package. The first torch call must name the real
/// cause and the line to add.
/// </summary>
public sealed class TorchLoadFailureTests(ITestOutputHelper output)
{
    /// <summary>What TorchSharp 0.107 throws when libLibTorchSharp.so fails to load for any reason.</summary>
    private static readonly NotSupportedException TorchSharpsMessage = new(
        "The libtorch-cpu-linux-x64 package version 2.10.0 is not restored on this system. This application or script uses TorchSharp " +
        "but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.");

    [Fact]
    public void GlibcxxFailureBehindTorchSharpsMessageNamesTheImportLine()
    {
        const string loader = "Unable to load shared library '/app/runtimes/linux-x64/native/libLibTorchSharp.so' or one of its dependencies: " +
                              "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)";
        var message = TorchRuntime.DescribeLoadFailure(TorchSharpsMessage, loader);
        Assert.Contains("GLIBCXX_3.4.32", message);
        Assert.Contains("ProjectReference", message);
        Assert.Contains("<Import Project=\"<your ML.LinearAttention checkout>/src/ML.LinearAttention.Torch/buildTransitive/ML.LinearAttention.Torch.targets\" />", message);
        Assert.Contains("wrong cause", message);
        Assert.DoesNotContain("add the NuGet package TorchSharp-cpu", message);

        // Without a loader error of that kind, the missing backend package is the cause indeed.
        var missing = TorchRuntime.DescribeLoadFailure(TorchSharpsMessage, nativeLoadError: null);
        Assert.Contains("add the NuGet package TorchSharp-cpu", missing);
        Assert.DoesNotContain("GLIBCXX", missing);
    }

    [Fact]
    public void TheLoaderErrorOfAnUnpatchedLibraryIsFoundOnThisSystem()
    {
        if (!OperatingSystem.IsLinux()) return;
        var libstdcxx = ElfVersionNeedPatcher.FindSystemLibStdCxx(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
        bool systemHasIt = libstdcxx != null && ElfVersionNeedPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx)).Contains("GLIBCXX_3.4.32");
        TorchRuntime.EnsureLoaded(); // libtorch is in the process, so the unpatched copy fails on the version need alone
        // The patched output copy loads: no loader error to report.
        Assert.Null(TorchRuntime.NativeLoadError(TorchRuntime.TorchSharpNativeCandidates()));
        Assert.NotEmpty(TorchRuntime.TorchSharpNativeCandidates());
        if (systemHasIt) return; // the NuGet cache's unpatched copy would load here: nothing to observe
        // What a ProjectReference consumer's output folder holds: TorchSharp's library as NuGet ships it.
        var error = TorchRuntime.NativeLoadError([ElfVersionNeedPatcherTests.PristineLibTorchSharp()]);
        Assert.NotNull(error);
        Assert.Contains("GLIBCXX_3.4.32", error);
        var message = TorchRuntime.DescribeLoadFailure(TorchSharpsMessage, error);
        output.WriteLine(message);
        Assert.Contains(TorchRuntime.BuildImportLine, message);
        Assert.Contains("libLibTorchSharp.so)", message); // the loader's own words ("… not found (required by …)") survive in the details
    }
}

using Microsoft.ML.LinearAttention.Runtime;
using MLLinearAttention.Build;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>TorchSharp loads from this build's output (CI runs these on a clean clone) and computes.</summary>
public class TorchSharpLoadTests
{
    [Fact]
    public void LibtorchLoadsAndReportsItsVersion()
    {
        TorchRuntime.EnsureLoaded();
        Assert.StartsWith("2.10", torch.__version__);
    }

    [Fact]
    public void TheLoadedNativeLibraryIsTheOutputCopyAndPatchedOnlyWhereNeeded()
    {
        if (!OperatingSystem.IsLinux()) return;
        TorchRuntime.EnsureLoaded();
        string outputCopy = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(outputCopy), $"expected TorchSharp's native library in the output folder at {outputCopy}");
        string maps = File.ReadAllText("/proc/self/maps");
        Assert.Contains(outputCopy, maps);
        Assert.DoesNotContain(Path.Combine(AppContext.BaseDirectory, "cpu", "libLibTorchSharp.so"), maps);

        var libstdcxx = ElfVersionNeedPatcher.FindSystemLibStdCxx(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
        bool systemHasIt = libstdcxx != null && ElfVersionNeedPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx)).Contains("GLIBCXX_3.4.32");
        var need = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(outputCopy)).Single(n => n.Name == "GLIBCXX_3.4.32");
        Assert.Equal(!systemHasIt, need.IsWeak);
        // The NuGet cache copy is never modified.
        var cached = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(ElfVersionNeedPatcherTests.PristineLibTorchSharp())).Single(n => n.Name == "GLIBCXX_3.4.32");
        Assert.False(cached.IsWeak);
    }

    [Fact]
    public void TinyForwardAndBackwardOnCpu()
    {
        torch.random.manual_seed(7);
        var layer = nn.Linear(8, 3);
        var x = torch.randn(5, 8);
        var target = torch.tensor(new long[] { 0, 1, 2, 1, 0 });
        var optimizer = optim.SGD(layer.parameters(), 0.5);
        double first = 0, last = 0;
        for (int step = 0; step < 30; step++)
        {
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(layer.forward(x), target);
            loss.backward();
            optimizer.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first * 0.5, $"loss should fall: {first} → {last}");
        Assert.NotNull(layer.weight!.grad);
    }
}

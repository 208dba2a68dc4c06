using MLLinearAttention.Build;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>The build-time patcher, on copies of TorchSharp's real native library from the NuGet cache.</summary>
public class ElfVersionNeedPatcherTests
{
    private const string Version = "GLIBCXX_3.4.32";
    private static readonly string[] Marker = { "_ZSt21ios_base_library_initv" };

    internal static string PristineLibTorchSharp()
    {
        // The restore brought TorchSharp into the NuGet cache; that copy is never patched (the build only patches output copies).
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                      ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"TorchSharp's native library was not found in the NuGet cache at {path}; run dotnet restore.");
        return path;
    }

    [Fact]
    public void PristineLibraryNeedsTheVersionStronglyAndOnlyForTheMarker()
    {
        var bytes = File.ReadAllBytes(PristineLibTorchSharp());
        var need = Assert.Single(ElfVersionNeedPatcher.ReadVersionNeeds(bytes), n => n.Name == Version);
        Assert.Equal("libstdc++.so.6", need.File);
        Assert.False(need.IsWeak);
        Assert.Equal(Marker, ElfVersionNeedPatcher.SymbolsBoundTo(bytes, need.VersionIndex));
    }

    [Fact]
    public void PatchingACopyChangesExactlyOneFlagBitAndIsIdempotent()
    {
        string copy = Path.Combine(Path.GetTempPath(), $"libLibTorchSharp-{Guid.NewGuid():N}.so");
        File.Copy(PristineLibTorchSharp(), copy);
        try
        {
            var before = File.ReadAllBytes(copy);
            Assert.Equal(VersionNeedPatchResult.Patched, ElfVersionNeedPatcher.WeakenVersionNeedInFile(copy, Version, Marker, out _));
            var after = File.ReadAllBytes(copy);
            Assert.Equal(before.Length, after.Length);
            var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToList();
            int offset = Assert.Single(changed);
            Assert.Equal(ElfVersionNeedPatcher.VerFlagWeak, (byte)(before[offset] ^ after[offset]));
            var need = ElfVersionNeedPatcher.ReadVersionNeeds(after).Single(n => n.Name == Version);
            Assert.Equal(need.FlagsOffset, offset);
            Assert.True(need.IsWeak);
            // Every other version need is untouched.
            Assert.Equal(ElfVersionNeedPatcher.ReadVersionNeeds(before).Where(n => n.Name != Version).Select(n => (n.Name, n.Flags)),
                         ElfVersionNeedPatcher.ReadVersionNeeds(after).Where(n => n.Name != Version).Select(n => (n.Name, n.Flags)));

            var stamp = File.GetLastWriteTimeUtc(copy);
            Assert.Equal(VersionNeedPatchResult.AlreadyWeak, ElfVersionNeedPatcher.WeakenVersionNeedInFile(copy, Version, Marker, out _));
            Assert.Equal(after, File.ReadAllBytes(copy));
            Assert.Equal(stamp, File.GetLastWriteTimeUtc(copy));
        }
        finally { File.Delete(copy); }
    }

    [Fact]
    public void RefusesWhenRealSymbolsBindToTheVersion()
    {
        var bytes = File.ReadAllBytes(PristineLibTorchSharp());
        var original = (byte[])bytes.Clone();
        // GLIBCXX_3.4 is used by hundreds of real symbols: weakening it would be unsafe.
        var result = ElfVersionNeedPatcher.WeakenVersionNeed(bytes, "GLIBCXX_3.4", Marker, out var blocking);
        Assert.Equal(VersionNeedPatchResult.RefusedSymbolsUseIt, result);
        Assert.NotEmpty(blocking);
        Assert.Equal(original, bytes);
    }

    [Fact]
    public void AVersionTheFileDoesNotAskForIsNotNeeded()
    {
        var bytes = File.ReadAllBytes(PristineLibTorchSharp());
        Assert.Equal(VersionNeedPatchResult.NotNeeded, ElfVersionNeedPatcher.WeakenVersionNeed(bytes, "GLIBCXX_9.9.99", Marker, out _));
    }

    [Fact]
    public void NonElfInputGetsAClearError()
    {
        var ex = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.ReadVersionNeeds(new byte[128]));
        Assert.Contains("not an ELF file", ex.Message);
    }

    [Fact]
    public void ReadsTheVersionsTheSystemLibstdcxxDefines()
    {
        if (!OperatingSystem.IsLinux()) return;
        string? lib = ElfVersionNeedPatcher.FindSystemLibStdCxx(null);
        Assert.NotNull(lib);
        var defined = ElfVersionNeedPatcher.ReadVersionDefinitions(File.ReadAllBytes(lib!));
        Assert.Contains("GLIBCXX_3.4", defined);
        Assert.Contains("GLIBCXX_3.4.21", defined);
    }
}

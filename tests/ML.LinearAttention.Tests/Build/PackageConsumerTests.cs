using System.Diagnostics;
using MLLinearAttention.Build;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>
/// The TorchSharp fix travels with the package: pack the library, build a consumer app that references it from a
/// local feed, and check the consumer's output folder (and a stale `cpu/` fallback copy) is patched and TorchSharp runs.
/// </summary>
public class PackageConsumerTests
{
    [Fact]
    public void AConsumerOfThePackageGetsALoadableTorchSharp()
    {
        if (!OperatingSystem.IsLinux()) return;
        string repo = RepoRoot();
        string work = Path.Combine(Path.GetTempPath(), "mlla-consumer-" + Guid.NewGuid().ToString("N"));
        string feed = Path.Combine(work, "feed"), app = Path.Combine(work, "app");
        Directory.CreateDirectory(feed);
        Directory.CreateDirectory(app);
        try
        {
            string version = "0.0.0-test" + DateTime.UtcNow.ToString("yyyyMMddHHmmss");
            foreach (var project in new[] { "src/ML.LinearAttention.Torch/ML.LinearAttention.Torch.csproj", "src/ML.LinearAttention/ML.LinearAttention.csproj" })
                Dotnet(repo, $"pack {project} -c Release -o \"{feed}\" -p:PackageVersion={version}");

            File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><ImplicitUsings>enable</ImplicitUsings>
                    <RestorePackagesPath>{Path.Combine(work, "packages")}</RestorePackagesPath></PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="ML.LinearAttention" Version="{version}" />
                    <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
                  </ItemGroup>
                </Project>
                """);
            // Keep the consumer independent of this repository's Directory.*.props/targets.
            File.WriteAllText(Path.Combine(app, "Directory.Build.props"), "<Project />");
            File.WriteAllText(Path.Combine(app, "Directory.Build.targets"), "<Project />");
            File.WriteAllText(Path.Combine(app, "Directory.Packages.props"), "<Project><PropertyGroup><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally></PropertyGroup></Project>");
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                var x = TorchSharp.torch.ones(3, 3);
                Console.WriteLine($"torch {TorchSharp.torch.__version__} sum {x.matmul(x).sum().item<float>()}");
                """);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <configuration><packageSources><add key="local" value="{feed}" /></packageSources></configuration>
                """);
            // A stale fallback copy from TorchSharp's `cpu/` consolidation must be fixed too.
            string output = Path.Combine(app, "bin", "Debug", "net10.0");
            Directory.CreateDirectory(Path.Combine(output, "cpu"));
            File.Copy(ElfVersionNeedPatcherTests.PristineLibTorchSharp(), Path.Combine(output, "cpu", "libLibTorchSharp.so"));

            string build = Dotnet(app, "build");
            var libstdcxx = ElfVersionNeedPatcher.FindSystemLibStdCxx(Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
            bool needed = libstdcxx != null && !ElfVersionNeedPatcher.ReadVersionDefinitions(File.ReadAllBytes(libstdcxx)).Contains("GLIBCXX_3.4.32");
            foreach (var copy in new[] { Path.Combine(output, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"), Path.Combine(output, "cpu", "libLibTorchSharp.so") })
            {
                var need = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(copy)).Single(n => n.Name == "GLIBCXX_3.4.32");
                Assert.Equal(needed, need.IsWeak);
            }
            if (needed) Assert.Contains("ML.LinearAttention: marked the GLIBCXX_3.4.32 need", build);

            string rebuilt = Dotnet(app, "build");          // idempotent: a second build still leaves a loadable copy
            string run = Dotnet(app, "run --no-build");
            Assert.Contains("torch 2.10", run);
            Assert.Contains("sum 27", run);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    internal static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "LinearAttentionML.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("LinearAttentionML.sln not found above " + AppContext.BaseDirectory);
    }

    private static string Dotnet(string workingDirectory, string arguments)
    {
        var info = new ProcessStartInfo("dotnet", arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment.Remove("MSBuildExtensionsPath");
        info.Environment.Remove("MSBUILD_EXE_PATH");
        info.Environment.Remove("MSBuildSDKsPath");
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5))) { process.Kill(true); Assert.Fail($"dotnet {arguments} timed out"); }
        string all = stdout.Result + stderr.Result;
        Assert.True(process.ExitCode == 0, $"dotnet {arguments} failed ({process.ExitCode}):\n{all}");
        return all;
    }
}

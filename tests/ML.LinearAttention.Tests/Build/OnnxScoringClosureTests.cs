using System.Text.Json;
using System.Xml.Linq;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>
/// The ONNX scoring sample deploys without TorchSharp: its restored dependency closure (obj/project.assets.json, written
/// by the restore that built these tests) holds no TorchSharp or libtorch package and no project of this library, and
/// its build output has no libtorch or TorchSharp file.
/// </summary>
public sealed class OnnxScoringClosureTests
{
    private static string ProjectDir => Path.Combine(PackageConsumerTests.RepoRoot(), "src", "ML.LinearAttention.OnnxScoring");

    [Fact]
    public void ScoringSampleClosureHasNoTorchSharpAndNoLibraryProject()
    {
        var assets = Path.Combine(ProjectDir, "obj", "project.assets.json");
        Assert.True(File.Exists(assets), $"{assets} is missing: restore the solution first.");
        using var json = JsonDocument.Parse(File.ReadAllText(assets));
        var libraries = json.RootElement.GetProperty("libraries").EnumerateObject()
            .Select(p => (Name: p.Name, Type: p.Value.GetProperty("type").GetString())).ToList();

        Assert.Contains(libraries, l => l.Name.StartsWith("Microsoft.ML.OnnxTransformer/", StringComparison.Ordinal));
        Assert.Contains(libraries, l => l.Name.StartsWith("Microsoft.ML.Tokenizers/", StringComparison.Ordinal));
        Assert.Contains(libraries, l => l.Name.StartsWith("Microsoft.ML.OnnxRuntime/", StringComparison.Ordinal));
        Assert.DoesNotContain(libraries, l => l.Name.Contains("TorchSharp", StringComparison.OrdinalIgnoreCase) || l.Name.Contains("libtorch", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(libraries, l => l.Type == "project");

        var project = XDocument.Load(Path.Combine(ProjectDir, "ML.LinearAttention.OnnxScoring.csproj"));
        Assert.Empty(project.Descendants("ProjectReference"));
        var packages = project.Descendants("PackageReference").Select(p => (string?)p.Attribute("Include")).ToList();
        Assert.Equal(new[] { "Microsoft.ML", "Microsoft.ML.OnnxTransformer", "Microsoft.ML.Tokenizers", "Microsoft.ML.OnnxRuntime" }, packages);
    }

    [Fact]
    public void ScoringSampleOutputHasNoTorchFiles()
    {
        var output = Path.Combine(ProjectDir, "bin", "Release", "net10.0");
        if (!Directory.Exists(output)) output = Path.Combine(ProjectDir, "bin", "Debug", "net10.0");
        Assert.True(Directory.Exists(output), $"{output} is missing: build the solution first.");
        var files = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
        Assert.Contains("ML.LinearAttention.OnnxScoring.dll", files);
        Assert.DoesNotContain(files, f => f!.Contains("torch", StringComparison.OrdinalIgnoreCase) || f.StartsWith("ML.LinearAttention.Torch", StringComparison.Ordinal));
    }
}

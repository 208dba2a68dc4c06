using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Tests.Build;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>docs/samples.md and docs/fault-suite.md say what the program and the suite actually have (issue #22).</summary>
public sealed class SamplesDocsTests
{
    private static string Doc(string name) => File.ReadAllText(Path.Combine(PackageConsumerTests.RepoRoot(), "docs", name));

    [Fact]
    public void FaultSuiteGivesTheCommandAndEveryTestItNamesExists()
    {
        var doc = Doc("fault-suite.md");
        Assert.Matches(new Regex(@"```bash\ndotnet test tests/ML\.LinearAttention\.Tests -c Release --filter "), doc);
        // The same references the command's grep picks up, each resolved to a test class (and method) of this assembly.
        var references = Regex.Matches(doc, @"`([A-Z][A-Za-z]+)/([A-Z][A-Za-z]+)(?:\.([A-Z][A-Za-z]+))?`").ToList();
        Assert.True(references.Count >= 20, $"only {references.Count} test references found");
        var assembly = typeof(SamplesDocsTests).Assembly;
        foreach (var m in references)
        {
            var type = assembly.GetType($"Microsoft.ML.LinearAttention.Tests.{m.Groups[1].Value}.{m.Groups[2].Value}");
            Assert.True(type is not null, $"{m.Value} names no test class");
            if (m.Groups[3].Success)
                Assert.True(type!.GetMethod(m.Groups[3].Value)?.IsDefined(typeof(FactAttribute), inherit: true) == true, $"{m.Value} names no test");
        }
    }

    [Fact]
    public void SamplesDocListsEveryCommandOfTheHelp()
    {
        var doc = Doc("samples.md");
        Assert.DoesNotContain("not there yet", doc);
        foreach (var command in new[] { "demo", "train", "convert", "evaluate", "predict", "serve", "export-backbone" })
        {
            Assert.Matches(new Regex($@"(?m)^\| `{Regex.Escape(command)}"), doc);
            Assert.Matches(new Regex($"(?m)^  {Regex.Escape(command)}\\b"), CommandRunner.Usage);
        }
    }
}

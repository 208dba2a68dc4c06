using System.ComponentModel;
using System.Diagnostics;
using Microsoft.ML.LinearAttention.Tests.Build;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>
/// The fla peer scripts (tools/fla-comparison: fla_bench.py times fla's chunk kernels on a GPU, make_table.py writes
/// docs/benchmarks/fla-comparison.md) through their own CPU unit tests: argument checks, error text, the table from
/// fake JSON. Needs python3 (no torch); without it the test says so and checks nothing.
/// </summary>
public class FlaComparisonScriptTests(ITestOutputHelper output)
{
    [Fact]
    public void FlaComparisonScriptsPassTheirUnitTests()
    {
        var info = new ProcessStartInfo("python3", "-m unittest discover -s tools/fla-comparison -p test_*.py")
        {
            WorkingDirectory = PackageConsumerTests.RepoRoot(),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        Process process;
        try { process = Process.Start(info)!; }
        catch (Win32Exception)
        {
            output.WriteLine("skipped: python3 is not on PATH.");
            return;
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            Assert.True(process.WaitForExit(60_000), "the script tests did not finish within a minute");
            string log = stdout + stderr.Result;
            output.WriteLine(log);
            Assert.True(process.ExitCode == 0, log);
            Assert.Matches(@"Ran [1-9]\d* tests", log);
        }
    }
}

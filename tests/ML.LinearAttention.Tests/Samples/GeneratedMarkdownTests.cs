using Microsoft.ML.LinearAttention.Samples.Reporting;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>Recorded command lines name no machine folder: $OUT, ../shared and the temp folder are written portably.</summary>
public sealed class GeneratedMarkdownTests
{
    [Fact]
    public void RecordedCommandLinesReplaceMachineFolders()
    {
        string before = Environment.GetEnvironmentVariable("OUT") ?? "";
        try
        {
            const string deviceOut = "/device-machine/out";   // stands for the GPU machine's $OUT folder
            Environment.SetEnvironmentVariable("OUT", deviceOut);
            string shared = Path.Combine(Directory.GetParent(Directory.GetCurrentDirectory())!.FullName, "shared");
            string temp = Path.GetTempPath().TrimEnd('/');
            string line = $"bench quality --out {deviceOut}/r12/long --data-folder {shared}/data --commit abc --budget 60 --scratch {temp}/q";
            Assert.Equal("dotnet ML.LinearAttention.Samples.dll bench quality --out $OUT/r12/long --data-folder ../shared/data --commit abc --budget 60 --scratch $TMPDIR/q",
                GeneratedMarkdown.SamplesCommand(line));
            Assert.Equal("bench x --out other/place", GeneratedMarkdown.Portable("bench x --out other/place"));
        }
        finally { Environment.SetEnvironmentVariable("OUT", before.Length == 0 ? null : before); }
    }
}

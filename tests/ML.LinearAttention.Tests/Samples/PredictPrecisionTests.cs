using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>`predict` and `evaluate` take --precision and --threads; bad values are one error line and exit code 2.</summary>
public sealed class PredictPrecisionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-precision-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public async Task PredictScoresInBf16AndRefusesBadPrecisions()
    {
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(48, seed: 5));
        var args = TicketFiles.TinyTrainArgs(data, P("m.zip"));
        args[args.IndexOf("--epochs") + 1] = "1";
        args.AddRange(new[] { "--validation-fraction", "0" });
        Assert.Equal(0, TrainCommand.Run(args, TextWriter.Null, default));

        var output = new StringWriter();
        Assert.Equal(0, PredictCommand.Run(new[] { "--model", P("m.zip"), "--data", data, "--out", P("bf16.csv"), "--precision", "bf16", "--threads", "1" }, output));
        Assert.Equal(49, File.ReadAllLines(P("bf16.csv")).Length); // header + every row

        foreach (var (value, expected) in new[] { ("fp16", "needs a CUDA device"), ("fp8", "is not a precision"), })
        {
            var error = new StringWriter();
            int code = await new CommandRunner(TextWriter.Null, error).RunAsync(new[] { "predict", "--model", P("m.zip"), "--data", data, "--precision", value }, default);
            Assert.Equal(2, code);
            Assert.StartsWith("error: ", error.ToString());
            Assert.Contains(expected, error.ToString());
        }
        var threads = new StringWriter();
        Assert.Equal(2, await new CommandRunner(TextWriter.Null, threads).RunAsync(new[] { "evaluate", "--model", P("m.zip"), "--data", data, "--threads", "0" }, default));
        Assert.Contains("--threads 0", threads.ToString());
    }
}

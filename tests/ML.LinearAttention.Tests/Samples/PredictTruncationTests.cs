using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>`predict` and `evaluate` say how many rows were cut to MaxSequenceLength (issue #22).</summary>
public sealed class PredictTruncationTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-trunc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void PredictAndEvaluateSayHowManyRowsWereCut()
    {
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(64, seed: 3));
        var args = TicketFiles.TinyTrainArgs(data, P("m.zip"));
        args[args.IndexOf("--max-length") + 1] = "16";
        args[args.IndexOf("--epochs") + 1] = "1";
        args.AddRange(new[] { "--validation-fraction", "0" });
        Assert.Equal(0, TrainCommand.Run(args, TextWriter.Null, default));

        // 8 rows: 3 with a 60-word body (cut at 16 tokens), 5 of a few tokens (whole).
        var sb = new StringBuilder("Title,Body,Tier,Users,Priority,Hours\n");
        for (int i = 0; i < 8; i++)
            sb.Append($"login fails,{(i % 3 == 0 ? string.Join(' ', Enumerable.Repeat("the server is down again", 12)) : "down")},1,5,High,2.5\n");
        File.WriteAllText(P("score.csv"), sb.ToString());

        var predict = new StringWriter();
        Assert.Equal(0, PredictCommand.Run(new[] { "--model", P("m.zip"), "--data", P("score.csv") }, predict));
        output.WriteLine(predict.ToString());
        var line = Regex.Match(predict.ToString(), @"(\d+) of (\d+) rows were longer than MaxSequenceLength = 16 and were cut \(([\d,]+) tokens dropped\); train with a larger MaxSequenceLength");
        Assert.True(line.Success, predict.ToString());
        Assert.Equal("3", line.Groups[1].Value);
        Assert.Equal("8", line.Groups[2].Value);
        Assert.True(int.Parse(line.Groups[3].Value.Replace(",", "")) >= 3 * (60 - 16));

        var evaluate = new StringWriter();
        Assert.Equal(0, EvaluateCommand.Run(new[] { "--model", P("m.zip"), "--data", P("score.csv"), "--confusion", P("c.png") }, evaluate));
        output.WriteLine(evaluate.ToString());
        Assert.Contains("3 of 8 rows were longer than MaxSequenceLength = 16 and were cut (", evaluate.ToString());

        // Nothing cut, nothing said.
        File.WriteAllText(P("short.csv"), "Title,Body,Tier,Users\nlogin fails,down,1,5\n");
        var quiet = new StringWriter();
        Assert.Equal(0, PredictCommand.Run(new[] { "--model", P("m.zip"), "--data", P("short.csv") }, quiet));
        Assert.DoesNotContain("were cut", quiet.ToString());
    }
}

using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>What `train` prints about a run (issue #22): early stopping, warnings naming the user's columns, progress lines.</summary>
public sealed class TrainReportingTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    private string Train(List<string> args)
    {
        var log = new StringWriter();
        Assert.Equal(0, TrainCommand.Run(args, log, default));
        output.WriteLine(log.ToString());
        return log.ToString();
    }

    [Fact]
    public void StoppedEarlyIsClaimedOnlyWhenEpochsWereLeft()
    {
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(96, seed: 6));
        // A vanishing learning rate: validation accuracy never improves after epoch 1, so patience 2 runs out in epoch 3.
        List<string> Args(int epochs, string model)
        {
            var a = TicketFiles.TinyTrainArgs(data, P(model));
            a[a.IndexOf("--epochs") + 1] = epochs.ToString();
            a.AddRange(new[] { "--lr", "1e-12", "--patience", "2", "--validation-fraction", "0.3" });
            return a;
        }

        var allEpochs = Train(Args(3, "three.zip"));
        Assert.Contains("3 epoch(s)", allEpochs);
        Assert.DoesNotContain("stopped early", allEpochs); // every epoch ran
        Assert.False(ModelCard.FromJson(File.ReadAllText(P("three.card.json"))).Training.StoppedEarly);

        var stopped = Train(Args(4, "four.zip"));
        Assert.Contains("3 epoch(s)", stopped);
        Assert.Contains("(stopped early: no validation improvement after epoch 1)", stopped);
        Assert.True(ModelCard.FromJson(File.ReadAllText(P("four.card.json"))).Training.StoppedEarly);
    }

    [Fact]
    public void MissingLabelWarningNamesTheUsersColumn()
    {
        var tickets = SupportTickets.Generate(64, seed: 8);
        var labels = tickets.Select((t, i) => i % 16 == 5 ? "" : t.Priority);
        var data = TicketFiles.Write(P("t.csv"), tickets, extraLabels: labels);
        var args = TicketFiles.TinyTrainArgs(data, P("m.zip"));
        args.AddRange(new[] { "--validation-fraction", "0" });
        var log = Train(args);
        Assert.Contains("4 training row(s) have no label in column 'Priority'", log);
        Assert.DoesNotContain("column 'Label'", log);
    }

    [Fact]
    public void ProgressLinesPrintEveryNStepsNotEveryStep()
    {
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(400, seed: 9));
        var args = TicketFiles.TinyTrainArgs(data, P("m.zip"));
        args[args.IndexOf("--progress") + 1] = "lines";
        args[args.IndexOf("--epochs") + 1] = "1";
        args.AddRange(new[] { "--validation-fraction", "0" });
        static List<long> Steps(string log) => Regex.Matches(log, @"step (\d+)/(\d+)").Select(m => long.Parse(m.Groups[1].Value)).ToList();

        var steps = Steps(Train(args)); // 400 rows / 16 = 25 steps: lines at 10, 20 and the last
        Assert.Equal(new long[] { 10, 20, 25 }, steps);

        args.AddRange(new[] { "--log-every", "1" });
        Assert.Equal(Enumerable.Range(1, 25).Select(i => (long)i), Steps(Train(args)));
    }
}

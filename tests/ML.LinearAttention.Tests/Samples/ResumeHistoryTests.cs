using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>A stopped `train` run resumed (issue #22): it says so, and its curves and card keep the earlier run's points.</summary>
public sealed class ResumeHistoryTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-resume-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void ResumedRunSaysSoAndKeepsTheEarlierRunsPoints()
    {
        var data = TicketFiles.Write(P("t.csv"), SupportTickets.Generate(240, seed: 4));
        var args = TicketFiles.TinyTrainArgs(data, P("m.zip"));
        args[args.IndexOf("--epochs") + 1] = "3";
        args.AddRange(new[] { "--validation-fraction", "0.1", "--checkpoint-dir", P("ck"), "--checkpoint-every", "4", "--patience", "0" });
        var history = Path.Combine(P("ck"), TrainingHistory.FileName);

        // 1. Stopped in epoch 2, after its validation at the end of epoch 1 (216 rows / 16 = 14 steps an epoch).
        using var cts = new CancellationTokenSource();
        long? epochOneEnd = null;
        var first = new StringWriter();
        Assert.Throws<TrainingStoppedException>(() => TrainCommand.Run(args, first, cts.Token, new CheckpointTests.SyncProgress<TrainingProgress>(p =>
        {
            if (p.ValidationMetric is not null) epochOneEnd ??= p.Step;
            if (p.Step >= 18) cts.Cancel();
        })));
        Assert.Equal(14, epochOneEnd);
        Assert.DoesNotContain("resuming", first.ToString());
        var written = File.ReadAllLines(history);
        Assert.Equal(18 + 1, written.Length); // a loss point per step and epoch 1's validation point, kept for the resume
        Assert.Equal(16, TrainCommand.NewestCheckpointStep(P("ck")));

        // 2. The same command resumes from the checkpoint of step 16 and finishes.
        var steps = new List<long>();
        var second = new StringWriter();
        Assert.Equal(0, TrainCommand.Run(args, second, default, new CheckpointTests.SyncProgress<TrainingProgress>(p => steps.Add(p.Step))));
        output.WriteLine(second.ToString());
        Assert.Equal(17, steps[0]);
        Assert.Contains("resuming from step 16 of 42 (the newest checkpoint); the curves keep the earlier run's 16 loss and 1 validation point(s).", second.ToString());
        Assert.Contains("(this process; resumed from step 16)", second.ToString());

        var card = ModelCard.FromJson(File.ReadAllText(P("m.card.json")));
        Assert.Equal(16, card.Training.ResumedFromStep);
        Assert.Equal(new[] { 1, 2, 3 }, card.Training.ValidationHistory.Select(v => v.Epoch)); // epoch 1 came from the stopped run
        Assert.Contains("resumed from the checkpoint of step 16", File.ReadAllText(P("m.card.md")));
        Assert.Matches(new Regex(@"\| 1 \| 0\.\d{4} \|"), File.ReadAllText(P("m.card.md")));
        Assert.False(File.Exists(history)); // the model is saved: nothing is left to resume
        Assert.Empty(Directory.GetFiles(P("ck")));

        // 3. A fresh run with the same directory starts a new history instead of appending to an old one.
        File.WriteAllText(history, "{\"Step\":1,\"Loss\":99}\n");
        var fresh = new StringWriter();
        Assert.Equal(0, TrainCommand.Run(args, fresh, default));
        Assert.DoesNotContain("resuming", fresh.ToString());
        Assert.Null(ModelCard.FromJson(File.ReadAllText(P("m.card.json"))).Training.ResumedFromStep);
    }
}

using System.Text.Json;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>The samples' `train`, `evaluate` and `predict` on a user's CSV/TSV, in process.</summary>
public sealed class SampleCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-samples-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void LabelKindIsInferredAndColumnsAreCheckedByName()
    {
        var ml = new MLContext();
        File.WriteAllText(P("a.csv"), "text,label,score,code\n\"hello, world\",good,1.5,0\nbye,bad,2.25,1\n\"say \"\"hi\"\"\",good,3,1\n");
        var data = TabularData.Open(P("a.csv"));
        Assert.Equal(',', data.Separator);
        Assert.Equal(new[] { "text", "label", "score", "code" }, data.Header);
        Assert.Equal(TaskKind.Classification, data.InferTask(ml, "label").Task);
        Assert.Equal(TaskKind.Regression, data.InferTask(ml, "score").Task);
        var (task, reason) = data.InferTask(ml, "code");
        Assert.Equal(TaskKind.Classification, task); // few distinct integers: class codes
        Assert.Contains("--task regression", reason);
        var e = Assert.Throws<ArgumentException>(() => data.IndexOf("Label"));
        Assert.Contains("did you mean 'label'", e.Message);
        Assert.Equal(new[] { "say \"hi\"", "x" }, TabularData.SplitLine("\"say \"\"hi\"\"\",x", ','));
        File.WriteAllText(P("b.txt"), "a\tb\n1\t2\n");
        Assert.Equal('\t', TabularData.Open(P("b.txt")).Separator);

        var typo = Assert.Throws<ArgumentException>(() => TrainCommand.Run(new[] { "--data", P("a.csv"), "--text", "text", "--label", "label", "--epoch", "2" }, TextWriter.Null, default));
        Assert.Contains("--epoch", typo.Message);
        Assert.Contains("--epochs", typo.Message);
    }

    [Fact]
    public void TrainEvaluateAndPredictOnACsvWriteTheModelCardAndCharts()
    {
        var tickets = SupportTickets.Generate(320, seed: 11);
        var train = TicketFiles.Write(P("tickets.csv"), tickets.Take(240));
        var model = P("tickets.zip");
        var log = new StringWriter();
        Assert.Equal(0, TrainCommand.Run(TicketFiles.TinyTrainArgs(train, model), log, default));
        output.WriteLine(log.ToString());
        Assert.Contains("label 'Priority' holds text (4 distinct values): classification", log.ToString());

        var card = ModelCard.FromJson(File.ReadAllText(P("tickets.card.json")));
        Assert.Equal(4, card.Data.Classes!.Length);
        Assert.Equal(new[] { "Tier", "Users" }, card.Data.FeatureColumns);
        Assert.InRange(card.Metrics["MicroAccuracy"], 0, 1);
        Assert.Contains("validation data", card.MetricsOn);
        Assert.True(card.Data.TrainRows + card.Data.ValidationRows == 240 && card.Data.ValidationRows > 0);
        Assert.Equal(16, card.Options["ModelDimension"]!.GetValue<int>());
        Assert.Contains("TorchSharp", card.Versions.Keys);
        Assert.True(card.TimingsSeconds["train"] > 0);
        Assert.Contains("## Metrics", File.ReadAllText(P("tickets.card.md")));
        ChartTests.Decode(File.ReadAllBytes(P("tickets.curves.png")));
        ChartTests.Decode(File.ReadAllBytes(P("tickets.confusion.png")));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));

        // evaluate: a TSV with a label the model never saw
        var test = TicketFiles.Write(P("test.tsv"), tickets.Skip(240), '\t', extraLabels: new[] { "Critical" });
        var evaluation = new StringWriter();
        Assert.Equal(0, EvaluateCommand.Run(new[] { "--model", model, "--data", test }, evaluation));
        output.WriteLine(evaluation.ToString());
        Assert.Contains("| MicroAccuracy |", evaluation.ToString());
        Assert.Contains("1 row(s) have a label the model was not trained on", evaluation.ToString());
        Assert.True(File.Exists(P("tickets.test.confusion.png")));

        // predict: no label column at all
        var unlabeled = TicketFiles.Write(P("new.csv"), tickets.Skip(300), withLabels: false);
        Assert.Equal(0, PredictCommand.Run(new[] { "--model", model, "--data", unlabeled }, TextWriter.Null));
        var lines = File.ReadAllLines(P("new.predictions.csv"));
        Assert.Equal("Title,Body,Tier,Users,Predicted,Probability", lines[0]);
        Assert.Equal(21, lines.Length);
        Assert.All(lines.Skip(1), l => Assert.Contains(TabularData.SplitLine(l, ',')[4], SupportTickets.Priorities));
    }

    [Fact]
    public void NumericLabelsTrainARegressor()
    {
        var train = TicketFiles.Write(P("tickets.csv"), SupportTickets.Generate(160, seed: 3));
        var args = TicketFiles.TinyTrainArgs(train, P("hours.zip"), label: "Hours");
        args.Remove("Priority"); // not a column role here
        var log = new StringWriter();
        Assert.Equal(0, TrainCommand.Run(args, log, default));
        Assert.Contains("regression", log.ToString());
        var card = ModelCard.FromJson(File.ReadAllText(P("hours.card.json")));
        Assert.True(card.Metrics["RMSE"] > 0);
        Assert.False(File.Exists(P("hours.confusion.png")));
        Assert.Equal(0, EvaluateCommand.Run(new[] { "--model", P("hours.zip"), "--data", train }, log));
        Assert.Contains("| RSquared |", log.ToString());
    }

    [Fact]
    public void CancellationMidEpochLeavesNoFiles()
    {
        var train = TicketFiles.Write(P("tickets.csv"), SupportTickets.Generate(200, seed: 5));
        using var cts = new CancellationTokenSource();
        var args = TicketFiles.TinyTrainArgs(train, P("out/model.zip"));
        var e = Assert.Throws<TrainingStoppedException>(() => TrainCommand.Run(args, TextWriter.Null, cts.Token,
            new CheckpointTests.SyncProgress<TrainingProgress>(p => { if (p.Step == 3) cts.Cancel(); })));
        Assert.StartsWith("Stopped at step 3/", e.Message); // after the batch in progress, saying that nothing was kept
        Assert.Contains("no model was written; nothing was kept (give --checkpoint-dir DIR", e.Message);
        Assert.Equal(new[] { "tickets.csv" }, Directory.EnumerateFileSystemEntries(_dir, "*", SearchOption.AllDirectories).Select(Path.GetFileName));
    }
}

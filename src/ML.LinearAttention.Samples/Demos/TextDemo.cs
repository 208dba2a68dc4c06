using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.Runtime;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Samples.Demos;

/// <summary>
/// The main job of ML.LinearAttention, end to end on built-in SYNTHETIC support tickets (title, body, four numeric
/// fields, priority): train a linear-attention classifier inside an ordinary ML.NET pipeline, evaluate it next to a
/// classic ML.NET baseline, save it with mlContext.Model.Save, load it in a fresh MLContext and predict with a
/// PredictionEngine. A share of the tickets are follow-ups whose priority depends on which of two issues is still open,
/// which word order alone tells: the table shows both models on those and on the single-issue tickets. About a
/// minute on 2 quiet CPU cores.
/// </summary>
public static class TextDemo
{
    /// <summary>Output of the PredictionEngine: the predicted priority (mapped back from the key) and class probabilities.</summary>
    public sealed class TicketPrediction
    {
        public string PredictedPriority { get; set; } = "";
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    /// <summary>Runs the demo, writing progress and results to <paramref name="logger"/>.</summary>
    public static void Run(ILogger logger) => Run(new LoggerWriter(logger));

    /// <summary>Runs the demo, writing progress and results to <paramref name="output"/>.</summary>
    public static void Run(TextWriter output)
    {
        var total = Stopwatch.StartNew();
        var mlContext = new MLContext(seed: 1);
        mlContext.Log += (_, e) =>
        {
            if (e.Kind is ChannelMessageKind.Info or ChannelMessageKind.Warning && e.Source.StartsWith("LinearAttention", StringComparison.Ordinal))
                output.WriteLine("  " + e.RawMessage);
        };

        // 1. Built-in synthetic data (deterministic): 3,000 tickets, 2,400 to train, 300 to validate, 300 to test.
        var tickets = SupportTickets.Generate(3000, seed: 2024);
        var train = mlContext.Data.LoadFromEnumerable(tickets.Take(2400));
        var validation = mlContext.Data.LoadFromEnumerable(tickets.Skip(2400).Take(300));
        var test = mlContext.Data.LoadFromEnumerable(tickets.Skip(2700));
        output.WriteLine($"Synthetic support tickets: {tickets.Count:N0} (train 2,400 / validation 300 / test 300). Example:");
        output.WriteLine($"  [{tickets[0].Priority}] {tickets[0].Title} | {tickets[0].Body}");
        var followUp = tickets.Skip(2700).First(SupportTickets.IsFollowUp);
        output.WriteLine($"A follow-up (triaged by the issue still open; {tickets.Skip(2700).Count(SupportTickets.IsFollowUp)} of the 300 test tickets):");
        output.WriteLine($"  [{followUp.Priority}] {followUp.Title} | {followUp.Body}");

        // 2. The pipeline: key the label, classify Title + Body (+ numeric fields) with linear attention, map back.
        var options = new TextClassificationOptions
        {
            Attention = "linear",
            ModelDimension = 64,
            NumberOfLayers = 2,
            NumberOfHeads = 4,
            MaxEpochs = 4,
            BatchSize = 32,
            LearningRate = 2e-3,
            MaxSequenceLength = 4096,
            ValidationSet = null, // set below, after MapValueToKey is fitted (validation rows need the key label too)
            EarlyStoppingPatience = 2,
            LogEverySteps = 25,
            CpuThreads = 1, // a model this small gains nothing from more threads; libtorch's OpenMP threads slow down on a busy machine
        };
        var keyLabel = mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(SupportTicket.Priority)).Fit(train);
        options.ValidationSet = keyLabel.Transform(validation);
        var pipeline = mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(SupportTicket.Priority))
            .Append(mlContext.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Title", "Body" }, featureColumnName: "Numbers", options: options))
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedPriority", "PredictedLabel"));

        output.WriteLine("Training the linear-attention classifier (progress from MLContext.Log):");
        var sw = Stopwatch.StartNew();
        var model = pipeline.Fit(train);
        var trainSeconds = sw.Elapsed.TotalSeconds;
        var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(test));
        var testFollowUps = mlContext.Data.LoadFromEnumerable(tickets.Skip(2700).Where(SupportTickets.IsFollowUp));
        var testSingles = mlContext.Data.LoadFromEnumerable(tickets.Skip(2700).Where(t => !SupportTickets.IsFollowUp(t)));
        double Accuracy(ITransformer m, IDataView data) => mlContext.MulticlassClassification.Evaluate(m.Transform(data)).MicroAccuracy;

        // 3. A classic ML.NET baseline on the same columns: bag of n-grams + numbers, SDCA maximum entropy.
        sw.Restart();
        var baseline = mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(SupportTicket.Priority))
            .Append(mlContext.Transforms.Text.FeaturizeText("TitleFeatures", "Title"))
            .Append(mlContext.Transforms.Text.FeaturizeText("BodyFeatures", "Body"))
            .Append(mlContext.Transforms.NormalizeMeanVariance("NumbersNormalized", "Numbers"))
            .Append(mlContext.Transforms.Concatenate("Features", "TitleFeatures", "BodyFeatures", "NumbersNormalized"))
            .Append(mlContext.MulticlassClassification.Trainers.SdcaMaximumEntropy())
            .Fit(train);
        var baselineSeconds = sw.Elapsed.TotalSeconds;
        var baselineMetrics = mlContext.MulticlassClassification.Evaluate(baseline.Transform(test));
        double majority = tickets.Skip(2700).GroupBy(t => t.Priority).Max(g => g.Count()) / 300.0;

        output.WriteLine();
        output.WriteLine("| model (test set, 300 tickets)                | micro acc | macro acc | log-loss | acc follow-ups | acc single issue | train s |");
        output.WriteLine("| -------------------------------------------- | --------: | --------: | -------: | -------------: | ---------------: | ------: |");
        output.WriteLine($"| linear attention 2×64, Title + Body + Numbers | {metrics.MicroAccuracy,9:F3} | {metrics.MacroAccuracy,9:F3} | {metrics.LogLoss,8:F3} | {Accuracy(model, testFollowUps),14:F3} | {Accuracy(model, testSingles),16:F3} | {trainSeconds,7:F0} |");
        output.WriteLine($"| ML.NET FeaturizeText + SDCA (baseline)        | {baselineMetrics.MicroAccuracy,9:F3} | {baselineMetrics.MacroAccuracy,9:F3} | {baselineMetrics.LogLoss,8:F3} | {Accuracy(baseline, testFollowUps),14:F3} | {Accuracy(baseline, testSingles),16:F3} | {baselineSeconds,7:F0} |");
        output.WriteLine($"| majority class                                | {majority,9:F3} |           |          |                |                  |         |");
        output.WriteLine();

        // 4. Save with ML.NET, load in a fresh MLContext (one Register line), predict with a PredictionEngine.
        var path = Path.Combine(Path.GetTempPath(), $"tickets-{Environment.ProcessId}.zip");
        try
        {
            mlContext.Model.Save(model, train.Schema, path);
            output.WriteLine($"Saved with mlContext.Model.Save: {path} ({new FileInfo(path).Length / 1024.0 / 1024.0:F1} MB).");
            var servingContext = new MLContext();
            LinearAttentionModel.Register(servingContext);
            var loaded = servingContext.Model.Load(path, out var schema);
            using var engine = servingContext.Model.CreatePredictionEngine<SupportTicket, TicketPrediction>(loaded, schema);
            foreach (var ticket in SupportTickets.Generate(3, seed: 99))
            {
                var p = engine.Predict(ticket);
                output.WriteLine($"  {p.PredictedPriority,-7} ({p.Score.Max():P0})  \"{ticket.Title}\" (labelled {ticket.Priority})");
            }
            (loaded as IDisposable)?.Dispose();
        }
        finally
        {
            if (File.Exists(path)) File.Delete(path);
            (model as IDisposable)?.Dispose();
        }
        output.WriteLine($"Done in {total.Elapsed.TotalSeconds:F0} s.");
    }

    private sealed class LoggerWriter(ILogger logger) : TextWriter
    {
        private readonly System.Text.StringBuilder _line = new();
        public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;
        public override void Write(char value)
        {
            if (value == '\n') { logger.LogInformation("{Line}", _line.ToString().TrimEnd('\r')); _line.Clear(); }
            else _line.Append(value);
        }
    }
}

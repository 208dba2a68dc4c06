using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `train`: a linear-attention model on the user's CSV/TSV. Columns get their roles from the command line (text,
/// numeric features, label); the label decides the task (text → classification, numbers → regression). Writes the model,
/// a model card (JSON + markdown), training curves and, for classification, a confusion matrix (PNG) next to it.
/// </summary>
public static partial class TrainCommand
{
    /// <summary>Runs the command; <paramref name="observer"/> also receives every progress report (tests).</summary>
    public static int Run(IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation, IProgress<TrainingProgress>? observer = null)
        => Run("train", args, output, cancellation, observer);

    /// <summary>
    /// `convert`: the same as `train`, starting from a pretrained softmax checkpoint (all-MiniLM-L6-v2 by default)
    /// converted to linear attention (Hedgehog by default): stage 1 attention transfer on the training text, then
    /// fine-tuning (LoRA by default) on the labels.
    /// </summary>
    public static int RunConvert(IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation, IProgress<TrainingProgress>? observer = null)
        => Run("convert", args, output, cancellation, observer);

    private static int Run(string command, IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation, IProgress<TrainingProgress>? observer)
    {
        if (command == "train" && args.Any(a => a is "--images" or "--image" || a.StartsWith("--images=", StringComparison.Ordinal) || a.StartsWith("--image=", StringComparison.Ordinal)))
            return ImageTrainCommand.Run(args, output, cancellation, observer);
        var total = Stopwatch.StartNew();
        var cl = new CommandLine(command, args, "verbose");
        var input = ParseArguments(cl);
        var ml = new MLContext(input.Seed);
        var (task, reason) = ChooseTask(ml, input);
        bool classify = task == TaskKind.Classification;
        var monitor = StartMonitor(ml, output, input, classify, cl.String("checkpoint-dir"));
        var options = command == "convert" ? ConvertOptions(cl, classify, input.Seed) : Options(cl, classify, input.Seed);
        options.Progress = new Fanout(monitor, observer);
        options.CancellationToken = cancellation;
        cl.RejectUnknown();
        output.WriteLine($"Task: {reason}.");

        var load = Stopwatch.StartNew();
        var sets = LoadData(ml, cl, input, classify);
        var (pipeline, trainView, evaluationView) = BuildPipeline(ml, input, sets, options, classify);
        double loadSeconds = load.Elapsed.TotalSeconds;

        output.WriteLine($"Training on {input.Data.Path}: text {string.Join(", ", input.Text)}{(input.Features.Length > 0 ? $"; features {string.Join(", ", input.Features)}" : "")}; label {input.Label}.");
        var fit = Stopwatch.StartNew();
        var model = Fit(pipeline, trainView, monitor, options, cancellation);
        double trainSeconds = fit.Elapsed.TotalSeconds;

        try
        {
            var core = ((IEnumerable<ITransformer>)model).OfType<LinearAttentionTransformer>().Single();
            var evaluate = Stopwatch.StartNew();
            var card = NewCard(input, options, reason, sets, classify);
            var pending = Evaluate(ml, model, core, evaluationView, card, input, sets, classify); // PNGs, written only after the model is saved
            double evaluateSeconds = evaluate.Elapsed.TotalSeconds;

            DescribeDataAndTraining(card, ml, core, input, sets, trainView, monitor);
            pending.Insert(0, DrawTrainingCurves(card, monitor, input.ModelPath, classify));

            // A Ctrl+C after training finished does not throw the finished model away: it is saved in full.
            var (json, md) = Save(ml, model, sets.Train.Schema, card, pending, input.ModelPath, loadSeconds, trainSeconds, evaluateSeconds, total);
            monitor.History?.Delete(); // the model is saved: nothing is left to resume
            WriteSummary(output, card, trainSeconds, input.ModelPath, json, md, pending);
            if (cancellation.IsCancellationRequested) output.WriteLine("Ctrl+C came after training had finished: the model and its files were written in full.");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static (TaskKind Task, string Reason) ChooseTask(MLContext ml, Arguments input) => input.RequestedTask switch
    {
        "auto" => input.Data.InferTask(ml, input.Label),
        "classification" => (TaskKind.Classification, "--task classification"),
        "regression" => (TaskKind.Regression, "--task regression"),
        _ => throw new ArgumentException($"--task {input.RequestedTask}: use auto, classification or regression."),
    };

    /// <summary>The progress display; the library's warnings (and with --verbose its info lines) print through it. With
    /// checkpoints on, it keeps its points in the checkpoint directory, so a resumed run draws the whole curve.</summary>
    private static TrainingMonitor StartMonitor(MLContext ml, TextWriter output, Arguments input, bool classify, string? checkpointDirectory)
        => StartMonitor(ml, output, input.Mode, input.LogEvery, input.Verbose, classify ? "val acc" : "val RMSE", checkpointDirectory);

    internal static TrainingMonitor StartMonitor(MLContext ml, TextWriter output, ProgressMode mode, int? logEvery, bool verbose, string metric, string? checkpointDirectory,
        string unit = "tok")
    {
        var monitor = new TrainingMonitor(output, mode, metric, logEvery)
        {
            Unit = unit,
            History = checkpointDirectory is null ? null : new TrainingHistory(Path.Combine(Path.GetFullPath(checkpointDirectory), TrainingHistory.FileName)),
        };
        ml.Log += (_, e) =>
        {
            if (!e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) return;
            if (e.Kind is ChannelMessageKind.Warning or ChannelMessageKind.Error) monitor.WriteLine("  warning: " + e.RawMessage);
            else if (verbose && e.Kind == ChannelMessageKind.Info) monitor.WriteLine("  " + e.RawMessage);
        };
        return monitor;
    }

    /// <summary>The training rows and the rows the metrics are measured on (the training rows themselves when none are held out).</summary>
    private sealed record DataSets(IDataView Train, IDataView Validation, string ValidationSource)
    {
        public bool HasValidation => !ReferenceEquals(Validation, Train);
    }

    private static DataSets LoadData(MLContext ml, CommandLine cl, Arguments input, bool classify)
    {
        // Columns as typed: text as String, features as Single (empty → NaN), label as String (classification) or Single.
        var columns = input.Text.Select(t => (t, DataKind.String)).Concat(input.Features.Select(f => (f, DataKind.Single)))
            .Append((input.Label, classify ? DataKind.String : DataKind.Single)).ToList();
        foreach (var f in input.Features) input.Data.RequireNumbers(ml, f, "--features");
        var all = input.Data.Load(ml, columns);
        if (input.ValidationFile is not null)
        {
            var validation = TabularData.Open(input.ValidationFile, cl.String("separator"));
            foreach (var f in input.Features) validation.RequireNumbers(ml, f, "--features");
            return new DataSets(all, validation.Load(ml, columns), Path.GetFileName(input.ValidationFile));
        }
        if (input.ValidationFraction > 0)
        {
            if (input.ValidationFraction >= 1) throw new ArgumentException("--validation-fraction must lie in [0, 1).");
            var split = ml.Data.TrainTestSplit(all, input.ValidationFraction, seed: input.Seed);
            return new DataSets(split.TrainSet, split.TestSet, $"{(input.ValidationFraction * 100).ToString("0.#", CultureInfo.InvariantCulture)}% held out, seed {input.Seed}");
        }
        return new DataSets(all, all, "none: metrics are on the training data");
    }

    /// <summary>
    /// The pipeline to fit and the views it trains and is evaluated on. Training-only steps (the label key) stay out of
    /// the saved model; Concatenate of the features goes into it. The label is keyed in place, under the user's column name,
    /// so the library's messages (rows without a label, missing classes) name the column the user knows.
    /// </summary>
    private static (IEstimator<ITransformer> Pipeline, IDataView TrainView, IDataView EvaluationView) BuildPipeline(
        MLContext ml, Arguments input, DataSets sets, LinearAttentionOptions options, bool classify)
    {
        var features = input.Features;
        ITransformer? labelKey = classify ? ml.Transforms.Conversion.MapValueToKey(input.Label, input.Label).Fit(sets.Train) : null;
        IDataView Prepare(IDataView d) => labelKey?.Transform(d) ?? d;
        var trainView = Prepare(sets.Train);
        IEstimator<ITransformer> pipeline = features.Length > 0 ? ml.Transforms.Concatenate("Features", features) : new EstimatorChain<ITransformer>();
        if (sets.HasValidation)
            options.ValidationSet = features.Length > 0 ? ml.Transforms.Concatenate("Features", features).Fit(trainView).Transform(Prepare(sets.Validation)) : Prepare(sets.Validation);
        else
            options.ValidationFraction = 0; // the command line's own split (--validation-fraction) was turned off: honour it
        options.FeatureColumnName = features.Length > 0 ? "Features" : null;
        pipeline = classify
            ? pipeline.Append(ml.Transforms.LinearAttention.TextClassification((TextClassificationOptions)options))
                .Append(ml.Transforms.Conversion.MapKeyToValue("Predicted", "PredictedLabel"))
            : pipeline.Append(ml.Transforms.LinearAttention.SequenceRegression((SequenceRegressionOptions)options));
        return (pipeline, trainView, sets.HasValidation ? Prepare(sets.Validation) : trainView);
    }

    private static ITransformer Fit(IEstimator<ITransformer> pipeline, IDataView trainView, TrainingMonitor monitor, LinearAttentionOptions options, CancellationToken cancellation)
    {
        try { return pipeline.Fit(trainView); }
        catch (OperationCanceledException e) when (cancellation.IsCancellationRequested)
        {
            monitor.Finish();
            throw Stopped(monitor, options, e);
        }
        finally { monitor.Finish(); }
    }

    private static ModelCard NewCard(Arguments input, LinearAttentionOptions options, string reason, DataSets sets, bool classify) => new()
    {
        Model = Path.GetFileName(input.ModelPath),
        Task = classify ? "Text classification" : "Text regression",
        TaskReason = reason,
        Options = ModelCard.DescribeOptions(options),
        MetricsOn = sets.HasValidation ? $"validation data, {sets.ValidationSource}" : "training data (no validation data)",
    };

    /// <summary>Puts the metrics on the card; returns the charts to write (the confusion matrix, for classification).</summary>
    private static List<(string Path, byte[] Bytes)> Evaluate(MLContext ml, ITransformer model, LinearAttentionTransformer core, IDataView evaluationView,
        ModelCard card, Arguments input, DataSets sets, bool classify)
    {
        var pending = new List<(string Path, byte[] Bytes)>();
        var scored = model.Transform(evaluationView);
        if (classify)
        {
            var m = ml.MulticlassClassification.Evaluate(scored, input.Label, "Score", "PredictedLabel");
            card.Metrics["MicroAccuracy"] = m.MicroAccuracy;
            card.Metrics["MacroAccuracy"] = m.MacroAccuracy;
            card.Metrics["LogLoss"] = m.LogLoss;
            var classes = ((TextClassificationTransformer)core).ClassNames?.ToArray() ?? Enumerable.Range(1, ((TextClassificationTransformer)core).ClassCount).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
            card.Data.Classes = classes;
            for (int i = 0; i < classes.Length && i < m.PerClassLogLoss.Count; i++)
            {
                double row = m.ConfusionMatrix.Counts[i].Sum();
                if (row > 0) card.Metrics[$"Recall[{classes[i]}]"] = m.ConfusionMatrix.Counts[i][i] / row;
            }
            var confusion = Stem(input.ModelPath) + ".confusion.png";
            var png = Charts.ConfusionMatrix(classes, m.ConfusionMatrix.Counts, $"CONFUSION MATRIX - {(sets.HasValidation ? "VALIDATION" : "TRAINING")} DATA");
            card.Files["confusion matrix"] = Path.GetFileName(confusion);
            pending.Add((confusion, png));
        }
        else
        {
            var m = ml.Regression.Evaluate(scored, input.Label, "Score");
            card.Metrics["RMSE"] = m.RootMeanSquaredError;
            card.Metrics["MAE"] = m.MeanAbsoluteError;
            card.Metrics["RSquared"] = m.RSquared;
        }
        return pending;
    }

    private static void DescribeDataAndTraining(ModelCard card, MLContext ml, LinearAttentionTransformer core, Arguments input, DataSets sets, IDataView trainView,
        TrainingMonitor monitor)
    {
        var report = core.TrainingReport!;
        card.Data = new ModelCard.CardData
        {
            Path = input.Data.Path, Separator = input.Data.Separator == '\t' ? "tab" : input.Data.Separator.ToString(), TextColumns = input.Text, FeatureColumns = input.Features,
            LabelColumn = input.Label, TrainRows = Count(trainView), ValidationRows = sets.HasValidation ? Count(sets.Validation) : 0, ValidationSource = sets.ValidationSource,
            Classes = card.Data.Classes,
        };
        card.Training = new ModelCard.CardTraining
        {
            Epochs = report.Epochs, Steps = report.Steps, FinalTrainLoss = report.FinalTrainLoss, BestValidationMetric = report.BestValidationMetric,
            // The trainer flags a run whose patience ran out in its last epoch too; every epoch ran, so it did not stop early.
            BestEpoch = report.BestEpoch, StoppedEarly = report.StoppedEarly && report.Epochs < report.MaxEpochs, Parameters = core.ParameterCount,
            Device = ml.GpuDeviceId is { } g ? $"cuda:{g}" : "cpu",
            ResumedFromStep = report.ResumedFromStep,
            ValidationHistory = monitor.Validation.Select(v => new ModelCard.EpochMetric((int)v.Epoch, v.Metric)).ToArray(),
        };
    }

    internal static (string Path, byte[] Bytes) DrawTrainingCurves(ModelCard card, TrainingMonitor monitor, string modelPath, bool classify)
    {
        var curves = Stem(modelPath) + ".curves.png";
        card.Files["training curves"] = Path.GetFileName(curves);
        return (curves, Charts.TrainingCurves(monitor.Loss, monitor.Validation, classify ? "accuracy" : "RMSE", $"TRAINING - {Path.GetFileName(modelPath).ToUpperInvariant()}"));
    }

    /// <summary>Saves the model first, then the charts and the card: none of them is left without its model.</summary>
    internal static (string Json, string Markdown) Save(MLContext ml, ITransformer model, DataViewSchema schema, ModelCard card, List<(string Path, byte[] Bytes)> pending,
        string modelPath, double loadSeconds, double trainSeconds, double evaluateSeconds, Stopwatch total)
    {
        var save = Stopwatch.StartNew();
        AtomicFile.Write(modelPath, temp => ml.Model.Save(model, schema, temp));
        card.TimingsSeconds["load data"] = loadSeconds;
        card.TimingsSeconds["train"] = trainSeconds;
        card.TimingsSeconds["evaluate"] = evaluateSeconds;
        card.TimingsSeconds["save"] = save.Elapsed.TotalSeconds;
        card.TimingsSeconds["total"] = total.Elapsed.TotalSeconds;
        foreach (var (path, bytes) in pending) AtomicFile.WriteAllBytes(path, bytes);
        var (json, md) = ModelCard.PathsFor(modelPath);
        AtomicFile.WriteAllText(json, card.ToJson());
        AtomicFile.WriteAllText(md, card.ToMarkdown());
        return (json, md);
    }

    internal static void WriteSummary(TextWriter output, ModelCard card, double trainSeconds, string modelPath, string json, string md,
        List<(string Path, byte[] Bytes)> pending)
    {
        output.WriteLine();
        output.WriteLine($"| {card.MetricsOn,-40} | value |");
        output.WriteLine($"| {new string('-', 40)} | ----: |");
        foreach (var (k, v) in card.Metrics) output.WriteLine($"| {k,-40} | {v.ToString("F3", CultureInfo.InvariantCulture),5} |");
        output.WriteLine();
        var t = card.Training;
        output.WriteLine($"{t.Epochs} epoch(s), {t.Steps} steps in {trainSeconds:F0} s{(t.ResumedFromStep is { } r ? $" (this process; resumed from step {r})" : "")}{(t.StoppedEarly ? $" (stopped early: no validation improvement after epoch {t.BestEpoch})" : "")}.");
        output.WriteLine($"Saved {modelPath}, {Path.GetFileName(json)}, {Path.GetFileName(md)}, {string.Join(", ", pending.Select(p => Path.GetFileName(p.Path)))}.");
    }

    internal static string Stem(string modelPath) => Path.Combine(Path.GetDirectoryName(modelPath)!, Path.GetFileNameWithoutExtension(modelPath));

    internal static long Count(IDataView view)
    {
        using var cursor = view.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        long n = 0;
        while (cursor.MoveNext()) n++;
        return n;
    }
}

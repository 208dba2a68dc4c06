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
public static class TrainCommand
{
    public const string Usage = """
          train --data FILE --text COL[,COL] --label COL [options]
                                   train on your CSV/TSV (header row required); writes MODEL, MODEL.card.json/.md, MODEL.curves.png
                                   and (classification) MODEL.confusion.png
              --features COL[,COL] numeric columns fused into the head (missing values → training mean)
              --task auto|classification|regression   (default auto: text labels → classification, numbers → regression)
              --model FILE         output model (default model.zip)
              --validation FILE    validation file; else --validation-fraction of the data (default 0.1, 0 = none)
              --epochs N --dim N --layers N --heads N --attention NAME --batch N --lr X --max-length N --dropout X
              --patience N         epochs without validation improvement before stopping (default 2)
              --seed N --threads N (libtorch CPU threads, default 1: fastest for small models)
              --checkpoint-dir DIR --checkpoint-every N   resumable checkpoints (a rerun resumes after a crash)
              --separator auto|comma|tab|semicolon  --progress auto|bar|lines|none  --verbose
        """;

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

    public const string ConvertUsage = """
          convert --data FILE --text COLS --label COL [train's options]  a pretrained softmax encoder converted to linear
              --pretrained NAME|FOLDER  all-MiniLM-L6-v2 (default), snowflake-arctic-embed-xs, a Hugging Face folder or .onnx
              --to MECHANISM       the linear mechanism replacing softmax (default hedgehog)
              --hybrid PLAN        keep some softmax layers, e.g. "softmax@-1" (default: convert every layer)
              --transfer-steps N   attention-transfer steps of stage 1 (default 200)
        """;

    private static int Run(string command, IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation, IProgress<TrainingProgress>? observer)
    {
        var total = Stopwatch.StartNew();
        var cl = new CommandLine(command, args, "verbose");
        bool convert = command == "convert";
        var data = TabularData.Open(cl.Required("data", "the CSV or TSV file to train on"), cl.String("separator"));
        var text = cl.List("text");
        if (text.Length == 0) throw new ArgumentException("'train' needs --text with at least one text column (comma-separated for several).");
        var features = cl.List("features");
        var label = cl.Required("label", "the column to predict");
        var modelPath = Path.GetFullPath(cl.String("model", "model.zip")!);
        var validationFile = cl.String("validation");
        double validationFraction = cl.Double("validation-fraction", validationFile is null ? 0.1 : 0);
        var requestedTask = cl.String("task", "auto")!.ToLowerInvariant();
        int seed = cl.Int("seed", 1);
        var mode = TrainingMonitor.Choose(cl.String("progress"));
        bool verbose = cl.Flag("verbose");
        foreach (var c in text.Concat(features).Append(label)) data.IndexOf(c);
        var overlap = text.Intersect(features).Concat(text.Where(t => t == label)).Concat(features.Where(f => f == label)).FirstOrDefault();
        if (overlap is not null) throw new ArgumentException($"Column '{overlap}' has two roles; each column is text, a feature or the label.");

        var ml = new MLContext(seed);
        var (task, reason) = requestedTask switch
        {
            "auto" => data.InferTask(ml, label),
            "classification" => (TaskKind.Classification, "--task classification"),
            "regression" => (TaskKind.Regression, "--task regression"),
            _ => throw new ArgumentException($"--task {requestedTask}: use auto, classification or regression."),
        };
        bool classify = task == TaskKind.Classification;
        string metricName = classify ? "val acc" : "val RMSE";
        var monitor = new TrainingMonitor(output, mode, metricName);
        ml.Log += (_, e) =>
        {
            if (!e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) return;
            if (e.Kind is ChannelMessageKind.Warning or ChannelMessageKind.Error) monitor.WriteLine("  warning: " + e.RawMessage);
            else if (verbose && e.Kind == ChannelMessageKind.Info) monitor.WriteLine("  " + e.RawMessage);
        };

        var options = convert ? ConvertOptions(cl, classify, seed) : Options(cl, classify, seed);
        options.Progress = new Fanout(monitor, observer);
        options.CancellationToken = cancellation;
        cl.RejectUnknown();
        output.WriteLine($"Task: {reason}.");

        // Columns as typed: text as String, features as Single (empty → NaN), label as String (classification) or Single.
        var columns = text.Select(t => (t, DataKind.String)).Concat(features.Select(f => (f, DataKind.Single)))
            .Append((label, classify ? DataKind.String : DataKind.Single)).ToList();
        var load = Stopwatch.StartNew();
        var all = data.Load(ml, columns);
        IDataView train = all, validation;
        string validationSource;
        if (validationFile is not null)
        {
            validation = TabularData.Open(validationFile, cl.String("separator")).Load(ml, columns);
            validationSource = Path.GetFileName(validationFile);
        }
        else if (validationFraction > 0)
        {
            if (validationFraction >= 1) throw new ArgumentException("--validation-fraction must lie in [0, 1).");
            var split = ml.Data.TrainTestSplit(all, validationFraction, seed: seed);
            (train, validation) = (split.TrainSet, split.TestSet);
            validationSource = $"{(validationFraction * 100).ToString("0.#", CultureInfo.InvariantCulture)}% held out, seed {seed}";
        }
        else
        {
            validation = train;
            validationSource = "none: metrics are on the training data";
        }
        bool hasValidation = !ReferenceEquals(validation, train);

        // Training-only steps (the label key) stay out of the saved model; Concatenate of the features goes into it.
        ITransformer? labelKey = classify ? ml.Transforms.Conversion.MapValueToKey("Label", label).Fit(train) : null;
        IDataView Prepare(IDataView d) => labelKey?.Transform(d) ?? d;
        var trainView = Prepare(train);
        IEstimator<ITransformer> pipeline = features.Length > 0 ? ml.Transforms.Concatenate("Features", features) : new EstimatorChain<ITransformer>();
        if (hasValidation)
            options.ValidationSet = features.Length > 0 ? ml.Transforms.Concatenate("Features", features).Fit(trainView).Transform(Prepare(validation)) : Prepare(validation);
        options.FeatureColumnName = features.Length > 0 ? "Features" : null;
        pipeline = classify
            ? pipeline.Append(ml.Transforms.LinearAttention.TextClassification((TextClassificationOptions)options))
                .Append(ml.Transforms.Conversion.MapKeyToValue("Predicted", "PredictedLabel"))
            : pipeline.Append(ml.Transforms.LinearAttention.SequenceRegression((SequenceRegressionOptions)options));
        double loadSeconds = load.Elapsed.TotalSeconds;

        output.WriteLine($"Training on {data.Path}: text {string.Join(", ", text)}{(features.Length > 0 ? $"; features {string.Join(", ", features)}" : "")}; label {label}.");
        var fit = Stopwatch.StartNew();
        ITransformer model;
        try { model = pipeline.Fit(trainView); }
        finally { monitor.Finish(); }
        double trainSeconds = fit.Elapsed.TotalSeconds;

        var pending = new List<(string Path, byte[] Bytes)>(); // PNGs, written only after the model is saved
        try
        {
            var core = ((IEnumerable<ITransformer>)model).OfType<LinearAttentionTransformer>().Single();
            var evaluate = Stopwatch.StartNew();
            var scored = model.Transform(hasValidation ? Prepare(validation) : trainView);
            var card = new ModelCard
            {
                Model = Path.GetFileName(modelPath),
                Task = classify ? "Text classification" : "Text regression",
                TaskReason = reason,
                Options = ModelCard.DescribeOptions(options),
                MetricsOn = hasValidation ? $"validation data, {validationSource}" : "training data (no validation data)",
            };
            string? confusion = null;
            if (classify)
            {
                var m = ml.MulticlassClassification.Evaluate(scored, "Label", "Score", "PredictedLabel");
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
                confusion = Stem(modelPath) + ".confusion.png";
                var png = Charts.ConfusionMatrix(classes, m.ConfusionMatrix.Counts, $"CONFUSION MATRIX - {(hasValidation ? "VALIDATION" : "TRAINING")} DATA");
                card.Files["confusion matrix"] = Path.GetFileName(confusion);
                pending.Add((confusion, png));
            }
            else
            {
                var m = ml.Regression.Evaluate(scored, label, "Score");
                card.Metrics["RMSE"] = m.RootMeanSquaredError;
                card.Metrics["MAE"] = m.MeanAbsoluteError;
                card.Metrics["RSquared"] = m.RSquared;
            }
            double evaluateSeconds = evaluate.Elapsed.TotalSeconds;

            var report = core.TrainingReport!;
            card.Data = new ModelCard.CardData
            {
                Path = data.Path, Separator = data.Separator == '\t' ? "tab" : data.Separator.ToString(), TextColumns = text, FeatureColumns = features,
                LabelColumn = label, TrainRows = Count(trainView), ValidationRows = hasValidation ? Count(validation) : 0, ValidationSource = validationSource,
                Classes = card.Data.Classes,
            };
            card.Training = new ModelCard.CardTraining
            {
                Epochs = report.Epochs, Steps = report.Steps, FinalTrainLoss = report.FinalTrainLoss, BestValidationMetric = report.BestValidationMetric,
                BestEpoch = report.BestEpoch, StoppedEarly = report.StoppedEarly, Parameters = core.ParameterCount,
                Device = ml.GpuDeviceId is { } g ? $"cuda:{g}" : "cpu",
            };
            var curves = Stem(modelPath) + ".curves.png";
            card.Files["training curves"] = Path.GetFileName(curves);
            pending.Insert(0, (curves, Charts.TrainingCurves(monitor.Loss, monitor.Validation, classify ? "accuracy" : "RMSE", $"TRAINING - {Path.GetFileName(modelPath).ToUpperInvariant()}")));

            cancellation.ThrowIfCancellationRequested();
            var save = Stopwatch.StartNew();
            AtomicFile.Write(modelPath, temp => ml.Model.Save(model, train.Schema, temp));
            card.TimingsSeconds["load data"] = loadSeconds;
            card.TimingsSeconds["train"] = trainSeconds;
            card.TimingsSeconds["evaluate"] = evaluateSeconds;
            card.TimingsSeconds["save"] = save.Elapsed.TotalSeconds;
            card.TimingsSeconds["total"] = total.Elapsed.TotalSeconds;
            foreach (var (path, bytes) in pending) AtomicFile.WriteAllBytes(path, bytes);
            var (json, md) = ModelCard.PathsFor(modelPath);
            AtomicFile.WriteAllText(json, card.ToJson());
            AtomicFile.WriteAllText(md, card.ToMarkdown());

            output.WriteLine();
            output.WriteLine($"| {card.MetricsOn,-40} | value |");
            output.WriteLine($"| {new string('-', 40)} | ----: |");
            foreach (var (k, v) in card.Metrics) output.WriteLine($"| {k,-40} | {v.ToString("F3", CultureInfo.InvariantCulture),5} |");
            output.WriteLine();
            output.WriteLine($"{report.Epochs} epoch(s), {report.Steps} steps in {trainSeconds:F0} s{(report.StoppedEarly ? " (stopped early)" : "")}.");
            output.WriteLine($"Saved {modelPath}, {Path.GetFileName(json)}, {Path.GetFileName(md)}, {string.Join(", ", pending.Select(p => Path.GetFileName(p.Path)))}.");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static string Stem(string modelPath) => Path.Combine(Path.GetDirectoryName(modelPath)!, Path.GetFileNameWithoutExtension(modelPath));

    private static long Count(IDataView view)
    {
        using var cursor = view.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        long n = 0;
        while (cursor.MoveNext()) n++;
        return n;
    }

    /// <summary>Options of `convert`: sizes, positions and tokenizer come from the checkpoint, so they are not set here.</summary>
    private static LinearAttentionOptions ConvertOptions(CommandLine cl, bool classify, int seed)
    {
        LinearAttentionOptions o = classify ? new TextClassificationOptions { LabelColumnName = "Label" } : new SequenceRegressionOptions();
        o.TextColumnNames = cl.List("text");
        if (!classify) o.LabelColumnName = cl.String("label")!;
        o.PretrainedBackbone = cl.String("pretrained", "all-MiniLM-L6-v2");
        o.Conversion = new Microsoft.ML.LinearAttention.Conversion.ConversionOptions
        {
            Attention = cl.String("to", "hedgehog")!,
            HybridPlan = cl.String("hybrid"),
            TransferSteps = cl.Int("transfer-steps", 200),
        };
        o.MaxEpochs = cl.Int("epochs", 3);
        o.BatchSize = cl.Int("batch", 16);
        o.LearningRate = cl.Double("lr", 5e-4);
        o.EarlyStoppingPatience = cl.Int("patience", 2);
        o.Seed = seed;
        o.CpuThreads = cl.Int("threads", 1);
        o.LogEverySteps = 1;
        return o;
    }

    private static LinearAttentionOptions Options(CommandLine cl, bool classify, int seed)
    {
        LinearAttentionOptions o = classify ? new TextClassificationOptions { LabelColumnName = "Label" } : new SequenceRegressionOptions();
        o.TextColumnNames = cl.List("text");
        if (!classify) o.LabelColumnName = cl.String("label")!;
        o.MaxEpochs = cl.Int("epochs", 3);
        o.ModelDimension = cl.Int("dim", 64);
        o.NumberOfLayers = cl.Int("layers", 2);
        o.NumberOfHeads = cl.Int("heads", 4);
        o.Attention = cl.String("attention", "linear")!;
        o.BatchSize = cl.Int("batch", 32);
        o.LearningRate = cl.Double("lr", classify ? 2e-3 : 1e-3);
        o.MaxSequenceLength = cl.Int("max-length", 512);
        o.Dropout = cl.Double("dropout", 0.1);
        o.EarlyStoppingPatience = cl.Int("patience", 2);
        o.Seed = seed;
        o.CpuThreads = cl.Int("threads", 1);
        o.LogEverySteps = 1; // every step reaches the progress bar and the loss curve
        o.CheckpointDirectory = cl.String("checkpoint-dir");
        o.CheckpointEverySteps = cl.Int("checkpoint-every", 200);
        return o;
    }

    private sealed class Fanout(IProgress<TrainingProgress> first, IProgress<TrainingProgress>? second) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            first.Report(value);
            second?.Report(value);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Vision;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `train` on images: a folder per class (--images DIR) or a CSV/TSV naming each image's path and class (--data FILE
/// --image COL --label COL). The saved model reads an image file path (column ImagePath) and writes Predicted and
/// Score, as the text models; the card, the curves and the confusion matrix are written as for text.
/// </summary>
public static class ImageTrainCommand
{
    public const string Usage = """
          train --images DIR | --data FILE --image COL --label COL [options]
                                   image classification: DIR holds a subfolder per class (DIR/cat/1.jpg, DIR/dog/2.png), or
                                   FILE (CSV/TSV) gives each image's path (relative to FILE's folder or --image-root DIR) and class;
                                   PNG, JPEG, BMP, GIF, WEBP; writes the same files as text training
              --image-size N --patch N --dim N --layers N --heads N --attention NAME
                                   (default 224, 16, 64, 2, 4, mala: the library's vision mechanisms, see docs/image-classification.md)
              --epochs N --batch N --lr X --patience N (default 10, 32, 1e-3, 3)   --no-augment (no random crops or flips)
              --validation DIR|FILE, --validation-fraction, --model, --seed, --threads, --progress, --log-every,
                                   --separator, --verbose as for text
        """;

    /// <summary>The model's input column: the image file's full path.</summary>
    public const string PathColumn = "ImagePath";

    public static int Run(IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation, IProgress<TrainingProgress>? observer)
    {
        var total = Stopwatch.StartNew();
        var cl = new CommandLine("train", args, "verbose", "no-augment");
        int seed = cl.Int("seed", 1);
        var ml = new MLContext(seed);
        var load = Stopwatch.StartNew();
        var source = Read(ml, cl, "images", "data", requireLabel: true);
        var classes = ImageSet.Classes(source.Rows, source.Description);
        var modelPath = Path.GetFullPath(cl.String("model", "model.zip")!);
        var monitor = TrainCommand.StartMonitor(ml, output, TrainingMonitor.Choose(cl.String("progress")), TrainCommand.LogEvery(cl), cl.Flag("verbose"), "val acc", null, unit: "img");
        var options = Options(cl, seed);
        options.Progress = new TrainCommand.Fanout(monitor, observer);
        options.CancellationToken = cancellation;

        var all = ml.Data.LoadFromEnumerable(source.Rows);
        IDataView train = all, validation = all;
        string validationSource = "none: metrics are on the training data";
        List<ImageInput> validationRows = source.Rows;
        if (cl.String("validation") is { } v)
        {
            var heldOut = Read(ml, cl, "validation", "validation", requireLabel: true, fromValidation: v);
            validation = ml.Data.LoadFromEnumerable(heldOut.Rows);
            validationRows = heldOut.Rows;
            validationSource = heldOut.Description;
        }
        else if (cl.Double("validation-fraction", 0.1) is > 0 and var fraction)
        {
            if (fraction >= 1) throw new ArgumentException("--validation-fraction must lie in [0, 1).");
            var split = ml.Data.TrainTestSplit(all, fraction, seed: seed);
            // Too few images to hold any out: train on all of them and say that the metrics are on the training data.
            if (TrainCommand.Count(split.TestSet) > 0 && TrainCommand.Count(split.TrainSet) > 0)
            {
                (train, validation) = (split.TrainSet, split.TestSet);
                validationSource = $"{(fraction * 100).ToString("0.#", CultureInfo.InvariantCulture)}% held out, seed {seed}";
            }
            else output.WriteLine($"note: {source.Rows.Count:N0} images are too few to hold {fraction.ToString("0.##", CultureInfo.InvariantCulture)} of them out; the metrics are on the training images.");
        }
        cl.RejectUnknown();
        bool held = !ReferenceEquals(train, validation);
        output.WriteLine($"Training an image classifier on {source.Description}: {source.Rows.Count:N0} image(s), {classes.Length} classes ({string.Join(", ", classes)}).");

        // The label is keyed with every class, sorted, outside the saved model (as for text); the file loader is inside it.
        var keyData = ml.Data.LoadFromEnumerable(classes.Select(c => new ClassName { Value = c }));
        var labelKey = ml.Transforms.Conversion.MapValueToKey("Label", "Label", keyData: keyData).Fit(all);
        var loader = ml.Transforms.LoadRawImageBytes("Image", null, PathColumn);
        if (held) options.ValidationSet = loader.Fit(validation).Transform(labelKey.Transform(validation));
        var pipeline = loader.Append(ml.Transforms.LinearAttention.ImageClassification(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("Predicted", "PredictedLabel"));
        double loadSeconds = load.Elapsed.TotalSeconds;

        var fit = Stopwatch.StartNew();
        var model = Fit(pipeline, labelKey.Transform(train), monitor, cancellation, source.Rows);
        double trainSeconds = fit.Elapsed.TotalSeconds;
        try
        {
            var core = LinearAttention.Persistence.LinearAttentionModel.TransformersIn(model).OfType<ImageClassificationTransformer>().Single();
            var evaluate = Stopwatch.StartNew();
            var scored = model.Transform(labelKey.Transform(validation));
            MulticlassClassificationMetrics m;
            try { m = ml.MulticlassClassification.Evaluate(scored, "Label", "Score", "PredictedLabel"); }
            catch (InvalidDataException e) { throw ImageSet.Undecodable(validationRows, e) ?? throw e; }
            var report = core.TrainingReport!;
            var card = new ModelCard
            {
                Model = Path.GetFileName(modelPath), Task = "Image classification", TaskReason = $"{classes.Length} classes from {source.Description}",
                Options = ModelCard.DescribeOptions(options), MetricsOn = held ? $"validation data, {validationSource}" : "training data (no validation data)",
                Data = new ModelCard.CardData
                {
                    Path = source.Path, Separator = source.Separator, LabelColumn = source.LabelColumn, ImageColumn = source.ImageColumn, ImageRoot = source.Root,
                    TrainRows = TrainCommand.Count(train), ValidationRows = held ? TrainCommand.Count(validation) : 0, ValidationSource = validationSource, Classes = classes,
                },
                Training = new ModelCard.CardTraining
                {
                    Epochs = report.Epochs, Steps = report.Steps, FinalTrainLoss = report.FinalTrainLoss, BestValidationMetric = report.BestValidationMetric,
                    BestEpoch = report.BestEpoch, StoppedEarly = report.StoppedEarly && report.Epochs < options.MaxEpochs, Parameters = core.ParameterCount,
                    Device = ml.GpuDeviceId is { } g ? $"cuda:{g}" : "cpu",
                    ValidationHistory = monitor.Validation.Select(x => new ModelCard.EpochMetric((int)x.Epoch, x.Metric)).ToArray(),
                },
            };
            card.Metrics["MicroAccuracy"] = m.MicroAccuracy;
            card.Metrics["MacroAccuracy"] = m.MacroAccuracy;
            card.Metrics["LogLoss"] = m.LogLoss;
            var names = core.ClassNames?.ToArray() ?? classes;
            for (int i = 0; i < names.Length && i < m.ConfusionMatrix.Counts.Count; i++)
            {
                double row = m.ConfusionMatrix.Counts[i].Sum();
                if (row > 0) card.Metrics[$"Recall[{names[i]}]"] = m.ConfusionMatrix.Counts[i][i] / row;
            }
            var confusion = TrainCommand.Stem(modelPath) + ".confusion.png";
            card.Files["confusion matrix"] = Path.GetFileName(confusion);
            var pending = new List<(string Path, byte[] Bytes)>
            {
                TrainCommand.DrawTrainingCurves(card, monitor, modelPath, classify: true),
                (confusion, Charts.ConfusionMatrix(names, m.ConfusionMatrix.Counts, $"CONFUSION MATRIX - {(held ? "VALIDATION" : "TRAINING")} DATA")),
            };
            double evaluateSeconds = evaluate.Elapsed.TotalSeconds;
            var (json, md) = TrainCommand.Save(ml, model, all.Schema, card, pending, modelPath, loadSeconds, trainSeconds, evaluateSeconds, total);
            TrainCommand.WriteSummary(output, card, trainSeconds, modelPath, json, md, pending);
            if (cancellation.IsCancellationRequested) output.WriteLine("Ctrl+C came after training had finished: the model and its files were written in full.");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>Where the images come from, as the card records it.</summary>
    internal sealed record Source(List<ImageInput> Rows, string Description, string Path, string Separator, string LabelColumn, string? ImageColumn, string? Root);

    /// <summary>
    /// Images from --<paramref name="folderOption"/> DIR (a folder per class, or any folder when unlabelled) or from
    /// --<paramref name="fileOption"/> FILE with --image COL (and --label COL); a CSV's columns default to the card's.
    /// </summary>
    internal static Source Read(MLContext ml, CommandLine cl, string folderOption, string fileOption, bool requireLabel, string? fromValidation = null,
        ModelCard? card = null)
    {
        var folder = fromValidation is null ? cl.String(folderOption) : Directory.Exists(fromValidation) ? fromValidation : null;
        var file = fromValidation is null ? cl.String(fileOption) : folder is null ? fromValidation : null;
        if (folder is not null && file is not null && fromValidation is null)
            throw new ArgumentException($"Give either --{folderOption} DIR (a folder of images) or --{fileOption} FILE (a CSV/TSV naming them), not both.");
        if (folder is not null)
        {
            var rows = requireLabel ? ImageSet.FromClassFolders(folder, fromValidation is null ? "--" + folderOption : "--validation") : ImageSet.FromFolder(folder, "--" + folderOption);
            var full = System.IO.Path.GetFullPath(folder);
            return new Source(rows, $"the folder {full}", full, "", requireLabel ? "(class folders)" : "", null, null);
        }
        if (file is null) throw new ArgumentException($"Which images? Give --{folderOption} DIR (a subfolder per class) or --{fileOption} FILE with --image COL (a column of image paths).");
        var data = TabularData.Open(file, cl.String("separator"));
        var image = cl.String("image") ?? card?.Data.ImageColumn
                    ?? throw new ArgumentException($"Which column of '{data.Path}' holds the image paths? Give --image COL. Columns: {string.Join(", ", data.Header)}.");
        string? label = requireLabel
            ? cl.String("label") ?? (card?.Data.ImageColumn is not null ? card.Data.LabelColumn : null)
              ?? throw new ArgumentException($"Which column of '{data.Path}' holds the classes? Give --label COL. Columns: {string.Join(", ", data.Header)}.")
            : null;
        data.IndexOf(image);
        if (label is not null) data.IndexOf(label);
        var root = cl.String("image-root");
        var list = ImageSet.FromTable(ml, data, image, label, root);
        return new Source(list, data.Path, data.Path, data.Separator == '\t' ? "tab" : data.Separator.ToString(), label ?? "", image,
            System.IO.Path.GetFullPath(root ?? System.IO.Path.GetDirectoryName(data.Path)!));
    }

    private static ImageClassificationOptions Options(CommandLine cl, int seed)
    {
        int size = cl.Int("image-size", 224);
        return new ImageClassificationOptions
        {
            LabelColumnName = "Label", ImageColumnName = "Image", ImageWidth = size, ImageHeight = size, PatchSize = cl.Int("patch", 16),
            ModelDimension = cl.Int("dim", 64), NumberOfLayers = cl.Int("layers", 2), NumberOfHeads = cl.Int("heads", 4), Attention = cl.String("attention", "mala")!,
            MaxEpochs = cl.Int("epochs", 10), BatchSize = cl.Int("batch", 32), LearningRate = cl.Double("lr", 1e-3), EarlyStoppingPatience = cl.Int("patience", 3),
            Augment = !cl.Flag("no-augment"), Seed = seed, CpuThreads = cl.Int("threads", 1), LogEverySteps = 1,
        };
    }

    private static ITransformer Fit(IEstimator<ITransformer> pipeline, IDataView train, TrainingMonitor monitor, CancellationToken cancellation, List<ImageInput> rows)
    {
        try { return pipeline.Fit(train); }
        catch (OperationCanceledException e) when (cancellation.IsCancellationRequested)
        {
            monitor.Finish();
            throw new TrainingStoppedException($"Stopped {TrainCommand.StoppedAt(monitor)}: no model was written; image training keeps no checkpoints, so nothing was kept.", e);
        }
        catch (InvalidDataException e) { throw ImageSet.Undecodable(rows, e) ?? throw e; }
        finally { monitor.Finish(); }
    }

    internal sealed class ClassName
    {
        public string Value { get; set; } = "";
    }
}

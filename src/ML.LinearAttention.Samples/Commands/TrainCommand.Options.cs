using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>The options of `train` and `convert`: their help, the column roles and the estimator options.</summary>
public static partial class TrainCommand
{
    /// <summary>The library's default MaxSequenceLength, which `train` keeps (no hidden 512-token cap).</summary>
    internal static readonly int DefaultMaxLength = new TextClassificationOptions().MaxSequenceLength;

    public const string Usage = """
          train --data FILE --text COL[,COL] --label COL [options]
                                   train on your CSV/TSV (header row required; .csv.gz/.tsv.gz are read as they are); writes MODEL,
                                   MODEL.card.json/.md, MODEL.curves.png and (classification) MODEL.confusion.png
              --features COL[,COL] numeric columns fused into the head (empty cells → training mean; a column holding text is an error)
              --task auto|classification|regression   (default auto: text labels → classification, numbers → regression)
              --model FILE         output model (default model.zip)
              --validation FILE    validation file; else --validation-fraction of the data (default 0.1, 0 = none)
              --epochs N --dim N --layers N --heads N --attention NAME --batch N --lr X --dropout X
                                   (default auto: up to 20 with early stopping from scratch, 3 otherwise; 64, 2, 4, linear, 32,
                                   2e-3 classification / 1e-3 regression, 0.1)
              --max-length N       longest input in tokens; longer rows are cut and counted (default 4096, the library's)
              --patience N         epochs without validation improvement before stopping (default 2)
              --seed N --threads N (libtorch CPU threads, default 1: fastest for small models)
              --checkpoint-dir DIR --checkpoint-every N   resumable checkpoints (default every 200 steps): a rerun resumes
                                   after a crash or Ctrl+C
              --separator auto|comma|tab|semicolon
              --progress auto|bar|lines|none   (default auto: a bar on a terminal, a line every 10% when redirected)
              --log-every N        with --progress lines: a line every N steps and at each epoch's end (default 1% of the
                                   steps, at least 10)
              --verbose            the library's info lines too
              Ctrl+C stops after the current batch: no model is written; with --checkpoint-dir the newest checkpoint is
              kept for a rerun to resume (exit code 130)
        """;

    public const string ConvertUsage = """
          convert --data FILE --text COLS --label COL [options]  a pretrained softmax encoder converted to linear attention
                                   (stage 1 attention transfer, then fine-tuning on the labels); writes the same files as train
              --pretrained NAME|FOLDER  all-MiniLM-L6-v2 (default), snowflake-arctic-embed-xs, a Hugging Face folder or .onnx
              --to MECHANISM       the linear mechanism replacing softmax (default hedgehog)
              --hybrid PLAN        keep some softmax layers, e.g. "softmax@-1" (default: convert every layer)
              --transfer-steps N   attention-transfer steps of stage 1 (default auto: from the data, at least 1,000)
              --conversion-cache DIR  keep the converted backbone there and reuse it when the same conversion runs again
              --max-length N       longest input in tokens (default and at most the checkpoint's positions, 512 for MiniLM)
              every other option of train: --features --task --model --validation --validation-fraction --epochs --batch
                                   --lr (default 5e-4) --dropout --patience --seed --threads --checkpoint-dir --checkpoint-every
                                   --separator --progress --log-every --verbose (batch default 16)
              not --dim --layers --heads --attention: the checkpoint fixes the sizes, --to picks the mechanism
        """;

    /// <summary>Options of train that the pretrained checkpoint of `convert` decides, and why.</summary>
    private static readonly (string Option, string Why)[] FixedByCheckpoint =
    {
        ("dim", "the pretrained checkpoint fixes the encoder's sizes"),
        ("layers", "the pretrained checkpoint fixes the number of layers"),
        ("heads", "the pretrained checkpoint fixes the number of heads"),
        ("attention", "the checkpoint's layers are softmax; --to names the linear mechanism they are converted to"),
    };

    /// <summary>The data file and the columns' roles, each column checked against the file's header.</summary>
    private sealed record Arguments(TabularData Data, string[] Text, string[] Features, string Label, string ModelPath, string? ValidationFile,
        double ValidationFraction, string RequestedTask, int Seed, ProgressMode Mode, int? LogEvery, bool Verbose);

    private static Arguments ParseArguments(CommandLine cl)
    {
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
        int? logEvery = LogEvery(cl);
        bool verbose = cl.Flag("verbose");
        foreach (var c in text.Concat(features).Append(label)) data.IndexOf(c);
        var overlap = text.Intersect(features).Concat(text.Where(t => t == label)).Concat(features.Where(f => f == label)).FirstOrDefault();
        if (overlap is not null) throw new ArgumentException($"Column '{overlap}' has two roles; each column is text, a feature or the label.");
        // The label keeps its name through training (so messages name it); the model's outputs must not hide it.
        if (label is "Score" or "PredictedLabel" or "Predicted" || (features.Length > 0 && label == "Features"))
            throw new ArgumentException($"The label column is named '{label}', a column the model writes itself; rename it in the header of '{data.Path}' (e.g. '{label}Label').");
        return new Arguments(data, text, features, label, modelPath, validationFile, validationFraction, requestedTask, seed, mode, logEvery, verbose);
    }

    /// <summary>Options of `convert`: sizes, positions and tokenizer come from the checkpoint, so they are not set here.</summary>
    internal static LinearAttentionOptions ConvertOptions(CommandLine cl, bool classify, int seed)
    {
        foreach (var (option, why) in FixedByCheckpoint)
            if (cl.String(option) is { } value)
                throw new ArgumentException($"--{option} {value} does not apply to 'convert': {why}. Leave it out, or use 'train' for an encoder of your own size.");
        var o = Common(cl, classify, seed, batch: 16, learningRate: 5e-4);
        o.PretrainedBackbone = cl.String("pretrained", "all-MiniLM-L6-v2");
        o.Conversion = new Microsoft.ML.LinearAttention.Conversion.ConversionOptions
        {
            Attention = cl.String("to", "hedgehog")!,
            HybridPlan = cl.String("hybrid"),
            TransferSteps = cl.String("transfer-steps") is null ? null : cl.Int("transfer-steps", 0),
            CacheDirectory = cl.String("conversion-cache"),
        };
        return o; // MaxSequenceLength left at the library default unless given: the estimator lowers it to the checkpoint's positions
    }

    internal static LinearAttentionOptions Options(CommandLine cl, bool classify, int seed)
    {
        var o = Common(cl, classify, seed, batch: 32, learningRate: classify ? 2e-3 : 1e-3);
        o.ModelDimension = cl.Int("dim", 64);
        o.NumberOfLayers = cl.Int("layers", 2);
        o.NumberOfHeads = cl.Int("heads", 4);
        o.Attention = cl.String("attention", "linear")!;
        return o;
    }

    /// <summary>The options `train` and `convert` share. The label keeps the user's column name (keyed in place for classification), so messages name it.</summary>
    private static LinearAttentionOptions Common(CommandLine cl, bool classify, int seed, int batch, double learningRate)
    {
        LinearAttentionOptions o = classify ? new TextClassificationOptions() : new SequenceRegressionOptions();
        o.TextColumnNames = cl.List("text");
        o.LabelColumnName = cl.String("label")!;
        o.MaxEpochs = cl.String("epochs") is null ? null : cl.Int("epochs", 0);
        o.BatchSize = cl.Int("batch", batch);
        o.LearningRate = cl.Double("lr", learningRate);
        o.MaxSequenceLength = cl.Int("max-length", o.MaxSequenceLength);
        o.Dropout = cl.Double("dropout", 0.1);
        o.EarlyStoppingPatience = cl.Int("patience", 2);
        o.Seed = seed;
        o.CpuThreads = cl.Int("threads", 1);
        o.LogEverySteps = 1; // every step reaches the loss curve; the monitor decides what is printed
        o.CheckpointDirectory = cl.String("checkpoint-dir");
        o.CheckpointEverySteps = cl.Int("checkpoint-every", 200);
        return o;
    }

    /// <summary>--log-every N (null = the monitor's default); 0 or less is refused.</summary>
    internal static int? LogEvery(CommandLine cl)
    {
        int? logEvery = cl.String("log-every") is null ? null : cl.Int("log-every", 0);
        if (logEvery is < 1) throw new ArgumentException($"--log-every {logEvery}: give a number of steps, 1 or more.");
        return logEvery;
    }

    /// <summary>Progress to the monitor and to an optional observer (tests).</summary>
    internal sealed class Fanout(IProgress<TrainingProgress> first, IProgress<TrainingProgress>? second) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            first.Report(value);
            second?.Report(value);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench quality`: fine-tunes a pretrained MiniLM (and its softmax→linear conversion) on real data from
/// ../shared/data through the ordinary ML.NET estimator, and writes accuracy and trainable parameters per method to
/// docs/benchmarks/quality.md. Methods of the fine-tuning catalog that is not in the library yet are listed with a note.
/// </summary>
public static class QualityBenchmark
{
    /// <summary>One row of the table. <paramref name="Accuracy"/> null = not run (see <paramref name="Note"/>).</summary>
    public sealed record Row(string Key, string Method, long? TrainableParameters, long? TotalParameters, double? Accuracy, TimeSpan? TrainTime, string Note);

    private const string Pending = "not available yet: needs the fine-tuning catalog (FineTuning/, issue 5), not merged into this branch";

    public static int Run(QualityBenchmarkOptions o, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = o.Device is null ? torch.cuda.is_available() : o.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        if (o.Threads is { } threads) TorchRuntime.SetCpuThreads(threads);
        var data = QualityData.Load(o.Dataset, o.DataFolder, o.TrainRows, o.TestRows, o.Seed);
        log.WriteLine($"bench quality ({o.Size}) on {(cuda ? "cuda:0" : $"cpu ({Environment.ProcessorCount} cores)")}: {data.Description}.");
        int classes = data.Train.Select(r => r.Label).Distinct().Count();
        double majority = data.Test.GroupBy(r => r.Label).Max(g => g.Count()) / (double)data.Test.Count;

        var rows = new List<Row>();
        bool Want(string key) => o.Only is null || o.Only.Contains(key);
        void Add(Row r)
        {
            rows.Add(r);
            log.WriteLine(r.Accuracy is null ? $"  {r.Method}: skipped ({r.Note})" : $"  {r.Method}: accuracy {r.Accuracy:F4}, {r.TrainableParameters:N0} trainable parameters, {r.TrainTime:hh\\:mm\\:ss}");
        }

        if (Want("full")) Add(Measure("full", $"{o.Backbone} softmax, full fine-tune", data, o, cuda, log, Backbone(o, data), "every parameter trains"));
        if (Want("probe")) Add(new Row("probe", "Linear probe (frozen encoder)", null, null, null, null, Pending));
        if (Want("mp")) Add(new Row("mp", "Moment Probing (MP)", null, null, null, null, Pending));
        if (Want("mp+")) Add(new Row("mp+", "MP+ (PSRP)", null, null, null, null, Pending));
        if (Want("lora")) Add(new Row("lora", "LoRA r 8, α 16 (q, k, v, o)", null, null, null, null, Pending));
        if (Want("converted"))
        {
            var converted = Backbone(o, data);
            converted.Conversion = new ConversionOptions { Attention = o.ConvertTo, TransferSteps = o.TransferSteps, TransferBatchSize = o.BatchSize };
            Add(Measure("converted", $"{o.Backbone} → {o.ConvertTo} (all layers), attention transfer + full fine-tune", data, o, cuda, log, converted,
                $"stage 1: {o.TransferSteps} steps on the training texts (labels unused), lr 1e-2; stage 2: every parameter trains (LoRA pending)"));
        }
        if (Want("converted+lora")) Add(new Row("converted+lora", $"{o.Backbone} → {o.ConvertTo}, attention transfer + LoRA", null, null, null, null, Pending));
        if (Want("scratch"))
        {
            var scratch = Common(o, data);
            scratch.Attention = o.ConvertTo;
            scratch.LearningRate = o.ScratchLearningRate;
            Add(Measure("scratch", $"{o.ConvertTo} encoder from scratch (2 layers, hidden 128, no backbone)", data, o, cuda, log, scratch,
                $"reference without pretraining; lr {o.ScratchLearningRate:G3}"));
        }

        Directory.CreateDirectory(o.OutputDirectory);
        var path = Path.Combine(o.OutputDirectory, "quality.md");
        File.WriteAllText(path, Markdown(o, data, cuda, classes, majority, rows));
        log.WriteLine($"wrote {path}");
        return 0;
    }

    private static TextClassificationOptions Common(QualityBenchmarkOptions o, QualityData data) => new()
    {
        TextColumnNames = data.TextColumns, MaxSequenceLength = o.MaxLength, BatchSize = o.BatchSize, MaxEpochs = o.Epochs,
        LearningRate = o.LearningRate, Seed = o.Seed, LogEverySteps = 50, EarlyStoppingPatience = 0,
    };

    private static TextClassificationOptions Backbone(QualityBenchmarkOptions o, QualityData data)
    {
        var options = Common(o, data);
        options.PretrainedBackbone = o.Backbone;
        return options;
    }

    private static Row Measure(string key, string method, QualityData data, QualityBenchmarkOptions o, bool cuda, TextWriter log,
        TextClassificationOptions options, string note)
    {
        log.WriteLine($"- {method}");
        var ml = new MLContext(seed: o.Seed) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = !cuda };
        ml.Log += (_, e) =>
        {
            if (e.Kind is ChannelMessageKind.Info or ChannelMessageKind.Warning && e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)
                && !e.RawMessage.StartsWith("Channel", StringComparison.Ordinal))
                log.WriteLine("    " + e.RawMessage);
        };
        var train = ml.Data.LoadFromEnumerable(data.Train);
        var test = ml.Data.LoadFromEnumerable(data.Test);
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", nameof(QualityRow.Label))
            .Append(ml.Transforms.LinearAttention.TextClassification(options));
        var clock = Stopwatch.StartNew();
        using var model = pipeline.Fit(train);
        var elapsed = clock.Elapsed;
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        var classifier = model.LastTransformer;
        // Until the fine-tuning catalog lands every method here trains all parameters.
        return new Row(key, method, classifier.ParameterCount, classifier.ParameterCount, metrics.MicroAccuracy, elapsed, note);
    }

    private static string Markdown(QualityBenchmarkOptions o, QualityData data, bool cuda, int classes, double majority, List<Row> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# Fine-tuning quality: pretrained softmax, efficient fine-tuning, softmax→linear conversion");
        sb.AppendLine();
        sb.AppendLine($"Generated by `dotnet run -c Release --project src/ML.LinearAttention.Samples -- {o.CommandLine}`");
        sb.AppendLine($"on {(cuda ? "CUDA device 0" : $"the CPU ({Environment.ProcessorCount} cores)")} ({o.Machine}), commit {o.Commit}, {DateTime.UtcNow:yyyy-MM-dd}.");
        if (o.Size == "small")
            sb.AppendLine().AppendLine("**Small (CPU smoke) size: the numbers only show that every row runs; they are not the project's quality figures.**");
        sb.AppendLine();
        sb.AppendLine($"- Data: {data.Description}; {classes} classes, majority class = {majority.ToString("F4", inv)} of the test rows.");
        sb.AppendLine($"- Backbone: {o.Backbone} (PretrainedBackbone option; BERT layout, softmax, its WordPiece vocabulary); MaxSequenceLength {o.MaxLength}, " +
                      $"batch {o.BatchSize}, {o.Epochs} epoch(s), AdamW lr {o.LearningRate.ToString("G3", inv)} (warm-up 6 %, cosine), dropout 0.1, seed {o.Seed}, " +
                      "mean pooling, fresh head (RMSNorm → dense → GELU → classes).");
        sb.AppendLine($"- Conversion: Conversion option, every layer → `{o.ConvertTo}` (registry defaults), q/k/v/o kept; stage 1 attention transfer " +
                      $"{o.TransferSteps} steps (batch {o.BatchSize}, AdamW lr 1e-2 cosine, 1000·MSE of each layer's output, LoLCATs' defaults); stage 2 as the full fine-tune.");
        sb.AppendLine();
        var reference = rows.FirstOrDefault(r => r.Key == "full")?.Accuracy;
        sb.AppendLine("| method | trainable parameters | accuracy | vs softmax full fine-tune | train time | notes |");
        sb.AppendLine("| --- | ---: | ---: | ---: | ---: | --- |");
        foreach (var r in rows)
        {
            string acc = r.Accuracy is { } a ? a.ToString("F4", inv) : "–";
            string rel = r.Accuracy is { } x && reference is { } y && y > 0 ? (x / y * 100).ToString("F1", inv) + " %" : "–";
            string p = r.TrainableParameters is { } t ? t.ToString("N0", inv) : "–";
            string time = r.TrainTime is { } tt ? tt.ToString(@"hh\:mm\:ss", inv) : "–";
            sb.AppendLine($"| {r.Method} | {p} | {acc} | {rel} | {time} | {r.Note} |");
        }
        sb.AppendLine();
        sb.AppendLine("Accuracy = share of test rows whose predicted class is right. Train time includes stage 1 for the converted rows.");
        sb.AppendLine("Targets of issue 5: converted linear ≥ 99 % of the softmax fine-tuned accuracy; MP above the linear probe.");
        sb.AppendLine("Rows marked \"not available yet\" are filled in once the fine-tuning catalog (linear probe, MP, MP+, LoRA) is merged.");
        return sb.ToString();
    }
}

using System.Globalization;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench transfer`: stage 1 of the conversion alone on a pretrained backbone and real text (SST-2 or AG News from
/// ../shared/data): the training-loss curve per layer (the progress lines), and the per-layer loss on held-out test
/// texts before and after. It is the measurement behind <see cref="TransferBudget"/>'s auto floor and generic top-up:
/// run it with --steps N / --min-texts 0 to compare.
/// </summary>
public static class TransferCurveBenchmark
{
    public const string Usage = """
          bench transfer [options] attention transfer (stage 1 of the conversion) alone: loss curve per layer and held-out
                                   per-layer loss on real text, to choose transfer budgets
              --data sst2|ag-news --train N (user texts, default 1000) --held-out N (test texts, default 200)
              --steps N|auto --batch N|auto --min-texts N (generic top-up target, default 4000; 0 = user texts only)
              --backbone NAME|FOLDER (default all-MiniLM-L6-v2) --convert-to NAME (default hedgehog) --max-length N (64)
              --log-every N (50) --seed N --threads N --device cpu|cuda
        """;

    public static int Run(string[] args, TextWriter log)
    {
        string Arg(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        int? Auto(string name, string fallback) => Arg(name, fallback) is "auto" ? null : int.Parse(Arg(name, fallback), CultureInfo.InvariantCulture);
        var known = new[] { "--data", "--train", "--held-out", "--steps", "--batch", "--min-texts", "--backbone", "--convert-to", "--max-length", "--log-every", "--seed", "--threads", "--device" };
        for (int i = 0; i < args.Length; i += 2)
            if (!known.Contains(args[i])) throw new ArgumentException($"Unknown option '{args[i]}' for bench transfer; known: {string.Join(' ', known)}.");
        int train = int.Parse(Arg("--train", "1000"), CultureInfo.InvariantCulture), heldOut = int.Parse(Arg("--held-out", "200"), CultureInfo.InvariantCulture);
        int maxLength = int.Parse(Arg("--max-length", "64"), CultureInfo.InvariantCulture), seed = int.Parse(Arg("--seed", "1"), CultureInfo.InvariantCulture);
        int minTexts = int.Parse(Arg("--min-texts", TransferBudget.DefaultMinimumTexts.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

        TorchRuntime.EnsureLoaded();
        if (Arg("--threads", "") is { Length: > 0 } threads) TorchRuntime.SetCpuThreads(int.Parse(threads, CultureInfo.InvariantCulture));
        var device = Arg("--device", torch.cuda.is_available() ? "cuda" : "cpu") == "cuda" ? torch.CUDA : torch.CPU;
        var data = QualityData.Load(Arg("--data", "sst2"), Path.Combine("..", "shared", "data"), train, heldOut, seed);
        var checkpoint = PretrainedBackbones.Load(Arg("--backbone", "all-MiniLM-L6-v2"));
        var tokenizer = PretrainedBackbones.Tokenizer(checkpoint);
        Example Encode(QualityRow r)
        {
            var texts = data.TextColumns.Length == 1 ? new[] { r.Text.AsMemory() } : new[] { r.Text.AsMemory(), r.Text2.AsMemory() };
            var enc = tokenizer.Encode(texts, maxLength);
            return new Example { Ids = enc.Ids, Segments = enc.Segments, Length = enc.Ids.Length };
        }
        var user = data.Train.Select(Encode).ToList();
        var test = data.Test.Select(Encode).ToList();

        torch.manual_seed(seed);
        using var softmax = new SequenceModel(BertEncoderWeights.ConfigFor(checkpoint.Config, tokenizer.PadId, new EncoderConfig { Outputs = 2, Dropout = 0 }));
        BertEncoderWeights.LoadInto(softmax, checkpoint);
        softmax.to(device);
        var plan = SoftmaxConversion.Plan(softmax.Config, Arg("--convert-to", "hedgehog"));
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        var budget = TransferBudget.Choose(user.Count, user.Average(e => e.Length), Auto("--steps", "auto"), Auto("--batch", "auto"), minTexts);
        var rows = GenericCorpus.Mix(user, budget.GenericTexts, tokenizer, maxLength, seed);
        var settings = new TransferSettings
        {
            Steps = budget.Steps, BatchSize = budget.BatchSize, LogEverySteps = int.Parse(Arg("--log-every", "50"), CultureInfo.InvariantCulture), Seed = seed, PadId = tokenizer.PadId,
        };
        log.WriteLine($"bench transfer on {device.type.ToString().ToLowerInvariant()} ({Environment.ProcessorCount} cores): {data.Description}.");
        log.WriteLine($"  budget: {budget.Reason}; {user.Count:N0} user + {budget.GenericTexts:N0} generic texts; held-out: {test.Count} test texts.");
        var eval = settings with { BatchSize = 32 };
        var before = AttentionTransfer.EvaluateLayers(softmax, converted, plan, test, eval, device);
        var report = AttentionTransfer.Run(softmax, converted, plan, fresh, () => rows, settings, device, new WriterLog(log));
        var after = AttentionTransfer.EvaluateLayers(softmax, converted, plan, test, eval, device);
        log.WriteLine("  | layer | held-out loss before | after | after / before |");
        log.WriteLine("  |---:|---:|---:|---:|");
        foreach (var layer in before.Keys.Order())
            log.WriteLine($"  | {layer} | {before[layer]:G4} | {after[layer]:G4} | {after[layer] / before[layer]:P1} |");
        log.WriteLine($"  | mean | {before.Values.Average():G4} | {after.Values.Average():G4} | {after.Values.Average() / before.Values.Average():P1} |");
        log.WriteLine($"  {report.Steps} steps in {report.Elapsed:hh\\:mm\\:ss}.");
        return 0;
    }

    private sealed class WriterLog(TextWriter writer) : ITrainingLog
    {
        public void Info(string message) => writer.WriteLine("    " + message);
        public void Warning(string message) => writer.WriteLine("    warning: " + message);
    }
}

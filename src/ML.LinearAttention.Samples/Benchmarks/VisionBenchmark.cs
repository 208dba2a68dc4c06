using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hybrid;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Vision;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Command-line options of `bench vision`.</summary>
public sealed record VisionBenchmarkOptions
{
    public string OutputDirectory { get; init; } = Path.Combine("docs", "benchmarks");
    public int[] Sizes { get; init; } = { 224, 512, 1024 };
    public int[] Batches { get; init; } = { 64, 16, 4 };
    /// <summary>Encoders to compare: a registry name (every block), or name:plan with a HybridPlan ("mala:softmax@-1");
    /// a "resnet18/" prefix puts the pretrained ResNet18 stem (trainable) in front instead of the patch embedding.</summary>
    public string[] Mixers { get; init; } = { "linear", "mala", "softmax" };
    public int Dim { get; init; } = 384;
    public int Layers { get; init; } = 12;
    public int Heads { get; init; } = 6;
    public int Patch { get; init; } = 16;
    public int Classes { get; init; } = 1000;
    public string? Device { get; init; }
    public string? DType { get; init; }
    public string? Commit { get; init; }
    public string? Machine { get; init; }
    public string CommandLine { get; init; } = "";
    public double SecondsPerCase { get; init; } = 3;

    public static VisionBenchmarkOptions Parse(string[] args)
    {
        var o = new VisionBenchmarkOptions { CommandLine = "bench vision " + string.Join(' ', args) };
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"Option {args[i]} needs a value.");
            int[] Ints(string v) => v.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s =>
                int.TryParse(s, out var n) && n > 0 ? n : throw new ArgumentException($"'{s}' is not a positive integer (in '{v}').")).ToArray();
            int Int(string v) => Ints(v).Single();
            o = args[i] switch
            {
                "--out" => o with { OutputDirectory = Value() },
                "--sizes" => o with { Sizes = Ints(Value()) },
                "--batch" => o with { Batches = Ints(Value()) },
                "--mixers" => o with { Mixers = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--dim" => o with { Dim = Int(Value()) },
                "--layers" => o with { Layers = Int(Value()) },
                "--heads" => o with { Heads = Int(Value()) },
                "--patch" => o with { Patch = Int(Value()) },
                "--classes" => o with { Classes = Int(Value()) },
                "--device" => o with { Device = Value() },
                "--dtype" => o with { DType = Value() },
                "--commit" => o with { Commit = Value() },
                "--machine" => o with { Machine = Value() },
                "--seconds" => o with { SecondsPerCase = double.Parse(Value(), CultureInfo.InvariantCulture) },
                _ => throw new ArgumentException($"Unknown option '{args[i]}' for bench vision."),
            };
        }
        if (o.Batches.Length != 1 && o.Batches.Length != o.Sizes.Length)
            throw new ArgumentException($"--batch needs one value or one per size ({o.Sizes.Length}); got {o.Batches.Length}.");
        return o;
    }

    public int BatchFor(int sizeIndex) => Batches.Length == 1 ? Batches[0] : Batches[sizeIndex];
}

/// <summary>
/// `bench vision`: images per second of a training step (forward, backward, AdamW) and of inference (forward, no
/// gradients) and peak device memory of the image classifier's patch encoder, for each attention mechanism and image
/// size, in one process; written to vision.md and vision.json. Synthetic pixels: the network is timed, not decoding.
/// </summary>
public static class VisionBenchmark
{
    public sealed record Result(string Encoder, int Size, int Tokens, int Batch, double? TrainImagesPerSecond, double? InferenceImagesPerSecond,
        double? TrainPeakMiB, double? InferencePeakMiB, string? Error);

    public static int Run(VisionBenchmarkOptions options, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        bool cuda = options.Device is null ? torch.cuda.is_available() : options.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        var device = cuda ? new Device(DeviceType.CUDA, 0) : torch.CPU;
        var dtype = (options.DType ?? (cuda ? "bf16" : "fp32")) switch
        {
            "bf16" => ScalarType.BFloat16,
            "fp32" => ScalarType.Float32,
            var d => throw new ArgumentException($"--dtype {d} is not supported; use bf16 or fp32."),
        };
        foreach (var spec in options.Mixers) Plan(spec, options.Layers);                // fail early on a bad name
        var memory = cuda ? new CudaMemoryProbe(0) : null;
        string commit = options.Commit ?? GitCommit();
        string machine = options.Machine ?? $"{Environment.MachineName}, {Environment.ProcessorCount} CPU cores";
        log.WriteLine($"bench vision on {device} ({machine}), {dtype}; ViT {options.Layers}×{options.Dim} ({options.Heads} heads), patch {options.Patch}; " +
                      $"memory: {memory?.Unavailable ?? (cuda ? "cudaMallocAsync pool high-water mark" : "not measured on CPU")}");
        var results = new List<Result>();
        foreach (var spec in options.Mixers)
            for (int s = 0; s < options.Sizes.Length; s++)
            {
                var r = Measure(spec, options.Sizes[s], options.BatchFor(s), options, device, dtype, cuda, memory);
                results.Add(r);
                log.WriteLine($"{spec,-20} {r.Size,5} px ({r.Tokens,5} tokens) B={r.Batch,3}  train {Fmt(r.TrainImagesPerSecond)} img/s  inference {Fmt(r.InferenceImagesPerSecond)} img/s  " +
                              $"peak {Fmt(r.TrainPeakMiB)} / {Fmt(r.InferencePeakMiB)} MiB {r.Error}");
            }
        Directory.CreateDirectory(options.OutputDirectory);
        File.WriteAllText(Path.Combine(options.OutputDirectory, "vision.json"), JsonSerializer.Serialize(new
        {
            options.CommandLine, Commit = commit, Machine = machine, Device = device.ToString(), DType = dtype.ToString(),
            options.Dim, options.Layers, options.Heads, options.Patch, Results = results,
        }, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(options.OutputDirectory, "vision.md"), Markdown(options, commit, machine, device, dtype, memory, results));
        log.WriteLine($"wrote {Path.Combine(options.OutputDirectory, "vision.md")} and vision.json");
        return 0;
    }

    /// <summary>The per-block mechanisms of an encoder spec: "name" or "name:hybrid-plan".</summary>
    private static List<EncoderConfig.LayerSpec> Plan(string spec, int layers)
    {
        var parts = StemOf(spec).Mixers.Split(':', 2);
        var name = parts[0];
        MixerRegistry.Get(name);
        var plan = parts.Length == 2 ? HybridPlan.Parse(parts[1]) : HybridPlan.None;
        return EncoderConfig.Plan(plan.Resolve(layers, name, null).Select(m => new LayerMixer(m.Name, m.Options)).ToList())!;
    }

    private static (bool ResNet, string Mixers) StemOf(string spec)
        => spec.StartsWith("resnet18/", StringComparison.OrdinalIgnoreCase) ? (true, spec["resnet18/".Length..]) : (false, spec);

    private static Result Measure(string spec, int size, int batch, VisionBenchmarkOptions o, Device device, ScalarType dtype, bool cuda, CudaMemoryProbe? memory)
    {
        bool resnet = StemOf(spec).ResNet;
        int tokens = resnet ? ((size + 31) / 32) * ((size + 31) / 32) : (size / o.Patch) * (size / o.Patch);
        try
        {
            using var scope = NewDisposeScope();
            torch.random.manual_seed(1);
            var config = new VisionConfig
            {
                ImageWidth = size, ImageHeight = size, PatchSize = o.Patch, Outputs = o.Classes,
                Stages = new() { new VisionStage(o.Layers, o.Dim, o.Heads) }, Layers = Plan(spec, o.Layers),
            };
            using var model = resnet ? VisionModel.WithPretrainedResNet18(config with { FreezeStem = false }) : new VisionModel(config);
            model.to(device);
            model.to(dtype);
            using var optimizer = torch.optim.AdamW(model.parameters(), lr: 1e-4);
            var pixels = torch.randint(0, 256, new long[] { batch, (long)size * size * 3 }, device: device).to(ScalarType.Byte);
            var labels = torch.randint(0, o.Classes, new long[] { batch }, device: device);
            void Sync() { if (cuda) torch.cuda.synchronize(device); }
            ModelBatch Batch() => new() { Pixels = pixels.alias(), Mask = torch.ones(batch, 1, dtype: ScalarType.Bool, device: device) };
            void Train()
            {
                using var s = NewDisposeScope();
                var loss = nn.functional.cross_entropy(model.Forward(Batch()).to(ScalarType.Float32), labels);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
            }
            void Infer() { using var s = NewDisposeScope(); using var _ = torch.no_grad(); model.Forward(Batch()); }

            model.train();
            Train(); Sync();                                                            // warm-up: kernels, allocator, optimizer state
            memory?.ResetPeak();
            double trainSeconds = Time(Train, Sync, o.SecondsPerCase);
            double? trainPeak = memory?.PeakBytes() is long tb ? tb / (1024.0 * 1024.0) : null;
            model.eval();
            Infer(); Sync();
            memory?.ResetPeak();
            double inferSeconds = Time(Infer, Sync, o.SecondsPerCase);
            double? inferPeak = memory?.PeakBytes() is long ib ? ib / (1024.0 * 1024.0) : null;
            return new Result(spec, size, tokens, batch, batch / trainSeconds, batch / inferSeconds, trainPeak, inferPeak, null);
        }
        catch (Exception e)
        {
            string message = e.Message.Split('\n')[0];
            return new Result(spec, size, tokens, batch, null, null, null, null, "error: " + (message.Length > 160 ? message[..160] : message));
        }
        finally
        {
            GC.Collect();
            if (cuda) torch.cuda.synchronize(device);
        }
    }

    // Seconds per step: at least 3 steps, then until the time budget is spent (at most 50).
    private static double Time(Action step, Action sync, double seconds)
    {
        var watch = Stopwatch.StartNew();
        int reps = 0;
        do { step(); reps++; sync(); } while (reps < 3 || (watch.Elapsed.TotalSeconds < seconds && reps < 50));
        return watch.Elapsed.TotalSeconds / reps;
    }

    private static string GitCommit()
    {
        try
        {
            var psi = new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi)!;
            string sha = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit(5000);
            return p.ExitCode == 0 && sha.Length > 0 ? sha : "unknown";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "unknown";
        }
    }

    private static string Fmt(double? v) => v is null ? "—" : v.Value.ToString(v < 10 ? "F2" : v < 100 ? "F1" : "F0", CultureInfo.InvariantCulture);

    private static string Markdown(VisionBenchmarkOptions o, string commit, string machine, Device device, ScalarType dtype, CudaMemoryProbe? memory, List<Result> results)
    {
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "Vision benchmark: linear vs softmax patch encoders", GeneratedMarkdown.SamplesCommand(o.CommandLine));
        md.AppendLine($"- commit: `{commit}`; machine: {machine}; device: {device}; dtype: {dtype} (weights and activations); libtorch {torch.__version__}");
        md.AppendLine($"- network: the image classifier's patch encoder (VisionModel): patch {o.Patch} convolution, {o.Layers} blocks of {o.Dim} with {o.Heads} heads, " +
                      "a depthwise-convolution position term before each block, mean pooling, linear head; synthetic uint8 pixels, augmentation on during training");
        md.AppendLine("- train = forward + backward + AdamW step; inference = forward under no_grad in eval mode; images/s = batch / seconds per step");
        md.AppendLine($"- peak memory: {(memory == null ? "not measured on CPU" : memory.Unavailable ?? "high-water mark of the CUDA default memory pool (allocator backend cudaMallocAsync) during the timed steps, weights and optimizer state included")}");
        md.AppendLine();
        var sizes = results.Select(r => r.Size).Distinct().OrderBy(s => s).ToList();
        md.AppendLine("## Images per second, `train | inference`");
        md.AppendLine();
        md.AppendLine("| encoder | " + string.Join(" | ", sizes.Select(s => $"{s} px ({results.First(r => r.Size == s).Tokens} tokens, B={results.First(r => r.Size == s).Batch})")) + " |");
        md.AppendLine("|---|" + string.Concat(sizes.Select(_ => "---|")));
        foreach (var group in results.GroupBy(r => r.Encoder))
            md.AppendLine($"| {group.Key} | " + string.Join(" | ", sizes.Select(s => group.FirstOrDefault(r => r.Size == s) is { } r
                ? r.Error is null ? $"{Fmt(r.TrainImagesPerSecond)} \\| {Fmt(r.InferenceImagesPerSecond)}" : r.Error.Replace("|", "/") : "")) + " |");
        md.AppendLine();
        md.AppendLine("## Peak memory (MiB), `train | inference`");
        md.AppendLine();
        md.AppendLine("| encoder | " + string.Join(" | ", sizes.Select(s => $"{s} px")) + " |");
        md.AppendLine("|---|" + string.Concat(sizes.Select(_ => "---|")));
        foreach (var group in results.GroupBy(r => r.Encoder))
            md.AppendLine($"| {group.Key} | " + string.Join(" | ", sizes.Select(s => group.FirstOrDefault(r => r.Size == s) is { Error: null } r
                ? $"{Fmt(r.TrainPeakMiB)} \\| {Fmt(r.InferencePeakMiB)}" : "—")) + " |");
        md.AppendLine();
        md.AppendLine("## Training speed-up over the softmax encoder (softmax time / encoder time; > 1 is faster)");
        md.AppendLine();
        md.AppendLine("| encoder | " + string.Join(" | ", sizes.Select(s => $"{s} px")) + " |");
        md.AppendLine("|---|" + string.Concat(sizes.Select(_ => "---|")));
        foreach (var group in results.GroupBy(r => r.Encoder))
            md.AppendLine($"| {group.Key} | " + string.Join(" | ", sizes.Select(s =>
            {
                var mine = group.FirstOrDefault(r => r.Size == s)?.TrainImagesPerSecond;
                var softmax = results.FirstOrDefault(r => r.Encoder == "softmax" && r.Size == s)?.TrainImagesPerSecond;
                return mine is double m && softmax is double sm ? (m / sm).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—";
            })) + " |");
        return md.ToString();
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The record of `bench onnx` (onnx.md and onnx.json) and the published sizes of the two scoring apps.</summary>
internal static class OnnxBenchmarkReport
{
    /// <summary>A published app: its folder's files and bytes.</summary>
    internal sealed record AppSize(string App, string Project, int Files, long Bytes);

    internal static Dictionary<string, string> Meta(OnnxBenchmark.Options o) => new()
    {
        ["command"] = "bench onnx " + string.Join(' ', Environment.GetCommandLineArgs().Skip(3)),
        ["commit"] = o.Commit ?? TrainingBenchmarkOptions.Detect("git", "rev-parse --short HEAD") ?? "unknown",
        ["machine"] = o.Machine ?? $"{Environment.ProcessorCount} CPU cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
        ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
        ["threads"] = o.Threads.ToString(CultureInfo.InvariantCulture),
        ["load"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "unknown",
        ["libtorch"] = TorchSharp.torch.__version__,
        ["onnxruntime"] = typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version?.ToString() ?? "unknown",
    };

    internal static void Write(OnnxBenchmark.Options o, Dictionary<string, string> meta, List<OnnxBenchmark.Result> results, List<AppSize>? sizes)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "onnx.json"),
            JsonSerializer.Serialize(new { meta, o.Train, o.Rows, o.ImageTrain, o.ImageRows, o.LatencyRows, Results = results, PublishedSizes = sizes }, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(o.OutputDirectory, "onnx.md"), Markdown(o, meta, results, sizes));
    }

    private static string Markdown(OnnxBenchmark.Options o, Dictionary<string, string> meta, List<OnnxBenchmark.Result> results, List<AppSize>? sizes)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("# ONNX export: exported graph against TorchSharp");
        sb.AppendLine();
        sb.AppendLine($"Written by `{meta["command"]}` at commit {meta["commit"]} on {meta["machine"]}, {meta["date"]}; libtorch {meta["libtorch"]}, " +
                      $"ONNX Runtime {meta["onnxruntime"]}, {meta["threads"]} threads for each. Do not edit by hand.");
        sb.AppendLine();
        sb.AppendLine($"Each case is a small text classifier (64 hidden, 2 layers, 4 heads, MaxSequenceLength 128) fitted for one epoch on the first {o.Train:N0} " +
                      $"rows of SST-2 (`sst2/dev.tsv` of ../shared/data), exported with `LinearAttentionOnnx.Export`, and scored on the next {o.Rows:N0} rows " +
                      "both ways: TorchSharp through ML.NET `Transform` (batches of 64), ONNX Runtime through an `InferenceSession` over the same token ids " +
                      "(batches of 64, each padded to its longest row; tokenization counted in both). One-row latency: the median over " +
                      $"{o.LatencyRows} rows scored one at a time (ML.NET prediction engine; `InferenceSession.Run` on one row). " +
                      "max |Δ| is over all class probabilities of all rows (fp32); agreement is the share of rows with the same predicted class.");
        if (results.Any(r => r.Case.StartsWith("image_", StringComparison.Ordinal)))
        {
            sb.AppendLine();
            sb.AppendLine($"The `image_` cases are small patch-encoder digit classifiers (28 × 28 px, patch 4, 64 hidden, 2 layers, 4 heads) fitted for two " +
                          $"epochs on the first {o.ImageTrain:N0} images of the MNIST test set (`mnist-t10k` of ../shared/data) and scored on its last " +
                          $"{o.ImageRows:N0}: TorchSharp through ML.NET `Transform`, ONNX Runtime over the pixel planes the exported contract describes " +
                          "(R, G, B as 0–255 floats, batches of 64; the graph normalises). One-row latency as above.");
        }
        sb.AppendLine();
        sb.AppendLine("| case | mechanism | rows | max \\|Δ\\| | same class | accuracy | nodes | TorchSharp rows/s | ONNX Runtime rows/s | TorchSharp p50 (ms) | ONNX Runtime p50 (ms) |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in results)
            sb.AppendLine(string.Create(inv, $"| {r.Case} | {r.Description} | {r.Rows:N0} | {r.MaxAbsDelta:E2} | {r.Agreement:P2} | {r.Accuracy:P1} | {r.Nodes} | " +
                                             $"{r.TorchRowsPerSecond:N0} | {r.OnnxRowsPerSecond:N0} | {r.TorchP50Ms:F2} | {r.OnnxP50Ms:F2} |"));
        sb.AppendLine();
        sb.AppendLine("`lora` and `mp` fine-tune a randomly initialised base (no pretrained backbone is loaded here), so their accuracy is low; " +
                      "they are in the table for the export of merged LoRA weights and of the Moment Probing head.");
        sb.AppendLine();
        bool pass = results.All(r => r.MaxAbsDelta <= 1e-4 && r.Agreement >= 0.999);
        sb.AppendLine(pass ? "Every case meets the targets: max |Δ| ≤ 1e-4 and the same class on ≥ 99.9 % of rows."
                           : "**Some case misses the targets (max |Δ| ≤ 1e-4, the same class on ≥ 99.9 % of rows).**");
        sb.AppendLine();
        sb.AppendLine($"The machine is shared with other jobs (load average {meta["load"]} when the run started), so the speeds vary from run to run; " +
                      "compare the two runtimes within a row rather than across records.");
        if (sizes is { Count: > 0 })
        {
            sb.AppendLine();
            sb.AppendLine("## Published scoring apps");
            sb.AppendLine();
            sb.AppendLine("`dotnet publish -c Release` (framework-dependent, linux-x64 runtime assets) of an app that scores a saved model:");
            sb.AppendLine();
            sb.AppendLine("| app | project | files | size (MB) |");
            sb.AppendLine("|---|---|---:|---:|");
            foreach (var s in sizes) sb.AppendLine(string.Create(inv, $"| {s.App} | `{s.Project}` | {s.Files:N0} | {s.Bytes / 1e6:N1} |"));
        }
        return sb.ToString();
    }

    /// <summary>Publishes the ONNX scoring sample and the TorchSharp model host (both load a model and score rows) and
    /// measures their folders; null when the repository or the SDK is not at hand.</summary>
    internal static List<AppSize>? PublishedSizes(TextWriter log)
    {
        var dir = new DirectoryInfo(Directory.GetCurrentDirectory());
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LinearAttentionML.sln"))) dir = dir.Parent;
        if (dir is null)
        {
            log.WriteLine("published sizes skipped: run from the repository (LinearAttentionML.sln not found above the current folder)");
            return null;
        }
        var apps = new[]
        {
            ("ONNX Runtime + ML.NET (no TorchSharp)", "src/ML.LinearAttention.OnnxScoring/ML.LinearAttention.OnnxScoring.csproj"),
            ("TorchSharp + libtorch CPU", "tests/ML.LinearAttention.ModelHost/ML.LinearAttention.ModelHost.csproj"),
        };
        var sizes = new List<AppSize>();
        var root = Directory.CreateTempSubdirectory("la-publish-").FullName;
        try
        {
            foreach (var (app, project) in apps)
            {
                var output = Path.Combine(root, Path.GetFileNameWithoutExtension(project));
                var psi = new ProcessStartInfo("dotnet", $"publish \"{Path.Combine(dir.FullName, project)}\" -c Release -r linux-x64 --self-contained false -o \"{output}\"")
                { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                using var p = Process.Start(psi)!;
                var stdout = p.StandardOutput.ReadToEndAsync();
                var stderr = p.StandardError.ReadToEndAsync();
                p.WaitForExit();
                if (p.ExitCode != 0)
                {
                    log.WriteLine($"publish of {project} failed (exit {p.ExitCode}); sizes skipped:\n{stdout.Result}{stderr.Result}");
                    return null;
                }
                var files = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Select(f => new FileInfo(f)).ToList();
                sizes.Add(new AppSize(app, project, files.Count, files.Sum(f => f.Length)));
                log.WriteLine($"published {project}: {files.Count} files, {files.Sum(f => f.Length) / 1e6:N1} MB");
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
        return sizes;
    }
}

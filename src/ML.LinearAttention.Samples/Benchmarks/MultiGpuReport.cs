using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Reporting;
using Row = Microsoft.ML.LinearAttention.Samples.Benchmarks.MultiGpuBenchmark.Row;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>multigpu.md and multigpu.json of `bench multigpu` (rewritten after every run, so a run cut short keeps what it measured).</summary>
internal static class MultiGpuReport
{
    /// <summary>A W-GPU row's scaling efficiency against a one-GPU row: W-GPU tokens/s ÷ (W × one-GPU tokens/s).</summary>
    public sealed record Efficiency(string Mode, string Mechanism, int Gpus, long T, string Reference, double? Value);

    public static List<Efficiency> Efficiencies(List<Row> rows)
    {
        var list = new List<Efficiency>();
        double? E(Row multi, Row? one) => multi.TokensPerSecond is double m && one?.TokensPerSecond is double s && s > 0 ? m / (multi.Gpus * s) : null;
        foreach (var r in rows.Where(r => r.Gpus > 1))
        {
            if (r.Mode == "data parallel")
                list.Add(new Efficiency(r.Mode, r.Mechanism, r.Gpus, r.T, $"1 GPU, same T and tokens per GPU", E(r, rows.FirstOrDefault(x => x.Gpus == 1 && x.Mechanism == r.Mechanism && x.T == r.T && x.Mode == "1 GPU" && x.BatchPerGpu == r.BatchPerGpu))));
            else
            {
                var ones = rows.Where(x => x.Mode == "1 GPU (SP model)" && x.BatchPerGpu == r.BatchPerGpu).ToList();
                list.Add(new Efficiency(r.Mode, r.Mechanism, r.Gpus, r.T, $"1 GPU at T/{r.Gpus} = {L(r.T / r.Gpus)} (same tokens per GPU: weak scaling)", E(r, ones.FirstOrDefault(x => x.T == r.T / r.Gpus))));
                list.Add(new Efficiency(r.Mode, r.Mechanism, r.Gpus, r.T, $"1 GPU at the same T = {L(r.T)} (the whole sequence on one GPU)", E(r, ones.FirstOrDefault(x => x.T == r.T))));
            }
        }
        return list;
    }

    public static void Write(MultiGpuOptions o, Dictionary<string, string> meta, List<Row> rows)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        var efficiencies = Efficiencies(rows);
        var json = JsonSerializer.Serialize(new { meta, options = new { o.Gpus, o.Layers, o.Hidden, o.Heads, o.Length, o.TokensPerGpu, o.SpLengths, o.SpBatch, o.Warmup, o.Steps }, rows, efficiencies },
            new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.WriteAllText(Path.Combine(o.OutputDirectory, "multigpu.json"), json);
        AtomicFile.WriteAllText(Path.Combine(o.OutputDirectory, "multigpu.md"), Markdown(o, meta, rows, efficiencies));
    }

    private static string Markdown(MultiGpuOptions o, Dictionary<string, string> meta, List<Row> rows, List<Efficiency> efficiencies)
    {
        string F(double? v, string f) => TrainingBenchmark.Fmt(v, f);
        var md = new StringBuilder();
        GeneratedMarkdown.Header(md, "Multi-GPU training: data and sequence parallelism over NCCL", meta["command"],
            "How it works and how to run it: [docs/gpu-training.md](../gpu-training.md#multi-gpu-training).");
        md.AppendLine($"- commit `{meta["commit"]}`; machine: {meta["machine"]}; collectives: {meta["collectives"]}; libtorch {meta["libtorch"]}; {meta["date"]}");
        md.AppendLine($"- model: {o.Layers} layers, hidden {o.Hidden}, {o.Heads} heads, FFN 4×, bert-base vocabulary; one process per GPU; collectives on the default CUDA stream");
        md.AppendLine($"- data parallel: `ModelTrainer` (bf16 mixed precision, AdamW, clipping) on synthetic rows of exactly T = {o.Length} tokens, {o.TokensPerGpu:N0} tokens per optimizer step " +
                      $"per GPU (weak scaling: the global batch is W × that), gradients all-reduced in fp32 buckets of 25 MiB before clipping; {o.Warmup} warm-up then {o.Steps} timed steps");
        md.AppendLine($"- sequence parallel (`SequenceParallelStack`, mechanism `{MultiGpuWorker.SpLabel}`): the same sizes, {o.Layers} of the library's pre-norm blocks with linear attention " +
                      "(relu map; LASP-2: one AllGather of the per-layer states forward, one all-reduce of their gradient backward), rotary positions at each slice's offset, whole-sequence mean pooling, bf16 weights on CUDA; " +
                      $"a step = forward, backward and the gradient all-reduce (no optimizer); B = {o.SpBatch} sequence(s) of T tokens, each of W GPUs holding T / W of them; `1 GPU (SP model)` is the same model unsplit");
        md.AppendLine("- tokens/s: all GPUs together; ms/step: the slowest rank; peak GiB: the largest rank (cudaMallocAsync pool high-water mark, needs PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync); " +
                      "comm: per rank, GPU time inside NCCL kernels (CUDA events around each collective) ÷ wall time of the timed steps; it includes waiting for the slower rank");
        md.AppendLine("- scaling efficiency = W-GPU tokens/s ÷ (W × one-GPU tokens/s)");
        md.AppendLine();
        md.AppendLine("| mode | mechanism | GPUs | T | B per GPU | tokens/s | ms/step | peak GiB | comm share per rank | status |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---|---|");
        foreach (var r in rows)
            md.AppendLine($"| {r.Mode} | {r.Mechanism} | {r.Gpus} | {L(r.T)} | {r.BatchPerGpu} | {F(r.TokensPerSecond, "N0")} | {F(r.MsPerStep, "F1")} | {F(r.PeakGiB, "F2")} | " +
                          $"{string.Join(" / ", r.CommShare.Select(s => F(s * 100, "F1") + " %"))} | {(r.Status ?? "").Replace("|", "/")} |");
        md.AppendLine();
        md.AppendLine("## Scaling efficiency");
        md.AppendLine();
        md.AppendLine("| mode | mechanism | GPUs | T | against | efficiency |");
        md.AppendLine("|---|---|---:|---:|---|---:|");
        foreach (var e in efficiencies)
            md.AppendLine($"| {e.Mode} | {e.Mechanism} | {e.Gpus} | {L(e.T)} | {e.Reference} | {F(e.Value * 100, "F1")} % |");
        md.AppendLine();
        md.AppendLine("No overlap of communication with computation: TorchSharp runs every kernel on the default stream and NCCL is queued there " +
                      "too, so each collective waits for the backward pass to finish (data parallel) or for its layer's states (sequence parallel); the comm column is the price of that.");
        return md.ToString();
    }

    internal static string L(long t) => t >= 1024 && t % 1024 == 0 ? $"{t / 1024}K" : t.ToString(CultureInfo.InvariantCulture);
}

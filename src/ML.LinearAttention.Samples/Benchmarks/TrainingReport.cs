using System.Globalization;
using System.Text;
using Microsoft.ML.LinearAttention.Samples.Reporting;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The markdown of `bench training` (training.md): tables, the issue's targets checked, plots, the FLOP formula.</summary>
internal static class TrainingReport
{
    public static string Markdown(TrainingBenchmarkOptions o, Dictionary<string, string> meta, bool cuda, int steps,
        Dictionary<string, (string Position, long MatrixParameters)> info, List<TrainingBenchmark.Point> points)
    {
        string Cell(TrainingBenchmark.Point? p, Func<TrainingBenchmark.Point, string> value) => p is null ? ""
            : p.TokensPerSecond is null ? (p.Status ?? "—").Replace("|", "/")
            : value(p) + (p.Checkpointed && !o.ActivationCheckpointing ? " †" : "") + (p.Status is null ? "" : $" ({p.Status.Replace("|", "/")})");
        var md = new StringBuilder();
        var lengths = points.Select(p => p.T).Distinct().OrderBy(t => t).ToList();
        string Head(string first) => $"| {first} | " + string.Join(" | ", lengths.Select(t => "T=" + L(t))) + " |\n|---|" + string.Concat(lengths.Select(_ => "---:|"));
        GeneratedMarkdown.Header(md, "Encoder training throughput", meta["command"],
            "How to run it and what the columns mean: [docs/gpu-training.md](../gpu-training.md).");
        md.AppendLine($"- commit `{meta["commit"]}`; machine: {meta["machine"]}; device {meta["device"]}; libtorch {meta["libtorch"]}; {meta["date"]}");
        md.AppendLine($"- model: {o.Layers} layers, hidden {o.Hidden}, {o.Heads} heads (head size {o.Hidden / o.Heads}), FFN 4×, dropout {o.Dropout}, " +
                      "bert-base-uncased WordPiece vocabulary (30,522), 2-class head; synthetic documents cut to exactly T tokens (no padding)");
        md.AppendLine($"- each point is one `TextClassificationEstimator.Fit` through ML.NET (tokenizer and batching on producer threads, AdamW, " +
                      $"gradient clipping 1.0): {o.TokensPerStep:N0} tokens per optimizer step (B = tokens / T), {o.WarmupSteps} warm-up step(s), " +
                      $"then up to {steps} timed steps (fewer when the point reaches its {o.SecondsPerPoint:F0} s bound)");
        md.AppendLine($"- precision: {meta["precision"]}; activation checkpointing {(o.ActivationCheckpointing ? "on" : o.CheckpointOnOom ? "off, except † = the point ran out of memory without it and was measured again with it (as are that mechanism's longer lengths)" : "off")}");
        md.AppendLine($"- peak memory: {meta["memory"]}");
        md.AppendLine($"- MFU = model FLOPs per token × tokens/s ÷ {o.PeakTflops:G} TFLOP/s" + (cuda ? " (H200 SXM dense bf16 datasheet figure; an 8192³ bf16 matmul reaches about 790 TFLOP/s on this machine, ../shared/gpu/README.md)" : "") +
                      "; model FLOPs per token = 6·N + 3·Σ attention FLOPs (formula at the end); * = a mechanism without an attention formula (its MFU counts projections and FFN only)");
        md.AppendLine();

        md.AppendLine("## Tokens per second");
        md.AppendLine();
        md.AppendLine(Head("mechanism (positions, N)"));
        foreach (var g in points.GroupBy(p => p.Mechanism))
        {
            var (position, matrix) = info[g.Key];
            md.AppendLine($"| {g.Key} ({position}, N = {PlotLines.ShortNumber(matrix)}) | " + string.Join(" | ", lengths.Select(t => Cell(g.FirstOrDefault(p => p.T == t), p => Short(p.TokensPerSecond)))) + " |");
        }
        md.AppendLine();
        md.AppendLine("## Milliseconds per step · peak GiB · MFU");
        md.AppendLine();
        md.AppendLine(Head("mechanism"));
        foreach (var g in points.GroupBy(p => p.Mechanism))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t => Cell(g.FirstOrDefault(p => p.T == t),
                p => $"{Num(p.MsPerStep, "F0")} ms · {(p.PeakGiB is null ? "—" : Num(p.PeakGiB, "F1") + " GiB")} · {(p.Mfu is double m ? (m * 100).ToString("F1", CultureInfo.InvariantCulture) + "%" : "—")}{(p.FlopsComplete ? "" : "*")}"))) + " |");
        md.AppendLine();
        md.AppendLine("## Speed-up over softmax (tokens/s ratio, > 1 is faster)");
        md.AppendLine();
        md.AppendLine(Head("mechanism"));
        foreach (var g in points.GroupBy(p => p.Mechanism).Where(g => g.Key != "softmax"))
            md.AppendLine($"| {g.Key} | " + string.Join(" | ", lengths.Select(t => Ratio(g.FirstOrDefault(p => p.T == t)?.TokensPerSecond, Softmax(points, t)?.TokensPerSecond))) + " |");
        md.AppendLine();
        Targets(md, points, lengths);
        md.AppendLine("## Plots");
        md.AppendLine();
        md.AppendLine("![training throughput](training-throughput.png)");
        md.AppendLine();
        md.AppendLine("![peak memory](training-memory.png)");
        md.AppendLine();
        md.AppendLine("## Model FLOPs per token");
        md.AppendLine();
        md.AppendLine("Training FLOPs per token = 6·N + 3·Σ_layers A(T). N = weight-matrix parameters applied to every token (projections, FFN, " +
                      "short convolutions, learned feature maps, head; embeddings excluded). A = forward FLOPs per token of a layer's attention " +
                      "kernel (H heads, head size D, chunk c): softmax 4·T·D·H; linear 4·F·D·H + 4·F·H (F = D for relu); hedgehog the same with " +
                      "F = 2·D; simple_gla 2·[2c(Dk+Dv) + 4·Dk·Dv]·H; gated_deltanet 2·[6c·Dk + 4c·Dv + c²/3 + 6·Dk·Dv]·H. Recomputation " +
                      "(checkpointing, flash attention's backward) is not counted. Every mechanism declares its A in its registry line " +
                      "(Flops in src/ML.LinearAttention.Torch/Attention/<Mechanism>/<Mechanism>Bench.cs); ModelFlops.cs sums them.");
        md.AppendLine();
         md.AppendLine("| mechanism | " + string.Join(" | ", lengths.Select(t => "T=" + L(t))) + " |\n|---|" + string.Concat(lengths.Select(_ => "---:|")));
        foreach (var g in points.GroupBy(p => p.Mechanism))
            md.AppendLine($"| {g.Key} GFLOP/token | " + string.Join(" | ", lengths.Select(t => g.FirstOrDefault(p => p.T == t) is { } p
                ? p.GflopPerToken.ToString(p.GflopPerToken >= 1 ? "F2" : "G3", CultureInfo.InvariantCulture) + (p.FlopsComplete ? "" : "*") : "")) + " |");
        return md.ToString();
    }

    private static void Targets(StringBuilder md, List<TrainingBenchmark.Point> points, List<long> lengths)
    {
        md.AppendLine("## Targets of issue 7, checked on these numbers");
        md.AppendLine();
        var linear = points.GroupBy(p => p.Mechanism).Where(g => g.Key != "softmax" && !g.Key.StartsWith("hybrid", StringComparison.Ordinal)).ToList();
        foreach (var g in linear)
        {
            var ok = g.Where(p => p.TokensPerSecond is not null).OrderBy(p => p.T).ToList();
            if (ok.Count < 2) { md.AppendLine($"- {g.Key}: too few measured lengths to judge flatness."); continue; }
            double first = ok[0].TokensPerSecond!.Value;
            double worst = ok.Max(p => Math.Abs(p.TokensPerSecond!.Value / first - 1));
            var last = ok[^1];
            md.AppendLine($"- {g.Key}: from T={L(ok[0].T)} to T={L(last.T)}, tokens/s differs from the T={L(ok[0].T)} value by at most {worst * 100:F0} % " +
                          $"({(worst <= 0.2 ? "meets" : "misses")} the ±20 % target); at T={L(last.T)} {Short(last.TokensPerSecond)} vs {Short(first)}" +
                          (g.Any(p => p.Status is not null && p.TokensPerSecond is null) ? $"; not measured: {string.Join(", ", g.Where(p => p.TokensPerSecond is null).Select(p => $"T={L(p.T)} ({p.Status})"))}" : "") + ".");
        }
        const long target = 16384;
        var sdpa = Softmax(points, target);
        if (lengths.Contains(target))
            foreach (var g in points.GroupBy(p => p.Mechanism).Where(g => g.Key != "softmax"))
            {
                var p = g.FirstOrDefault(x => x.T == target);
                if (p?.TokensPerSecond is double mine && sdpa?.TokensPerSecond is double reference)
                    md.AppendLine($"- {g.Key} at T=16K: {mine / reference:F2}× the softmax encoder ({(mine / reference >= 5 ? "meets" : "misses")} the ≥ 5× target).");
            }
        foreach (var g in points.GroupBy(p => p.Mechanism))
        {
            var ok = g.Where(p => p.PeakGiB is not null).OrderBy(p => p.T).ToList();
            if (ok.Count < 2) continue;
            md.AppendLine($"- {g.Key}: peak memory {ok[0].PeakGiB:F1} GiB at T={L(ok[0].T)} and {ok[^1].PeakGiB:F1} GiB at T={L(ok[^1].T)} " +
                          $"with the same tokens per step (constant means memory per sequence linear in T; ratio {ok[^1].PeakGiB / ok[0].PeakGiB:F2}).");
        }
        md.AppendLine();
    }

    private static TrainingBenchmark.Point? Softmax(List<TrainingBenchmark.Point> points, long t) => points.FirstOrDefault(p => p.Mechanism == "softmax" && p.T == t);

    private static string Ratio(double? mine, double? reference) => mine is double a && reference is double b && b > 0 ? (a / b).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—";

    private static string Num(double? v, string format) => TrainingBenchmark.Fmt(v, format);

    internal static string Short(double? v) => v is double d ? PlotLines.ShortNumber(d >= 1e4 ? Math.Round(d / 100) * 100 : Math.Round(d)) : "—";

    internal static string L(long t) => PlotLines.ShortNumber(t, binary: true);
}

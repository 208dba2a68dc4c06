using System.Diagnostics;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>Settings of stage 1 (from <see cref="ConversionOptions"/>).</summary>
public sealed record TransferSettings
{
    public int Steps { get; init; } = 200;
    public int BatchSize { get; init; } = 16;
    public long MaxBatchTokens { get; init; } = 65536;
    public double LearningRate { get; init; } = 1e-2;
    public double OutputMseWeight { get; init; } = 1000;
    public double AttentionCrossEntropyWeight { get; init; }
    public int LogEverySteps { get; init; } = 50;
    public int Seed { get; init; } = 1;
    public int PadId { get; init; }
}

/// <summary>
/// What stage 1 did: steps, the loss of the first batch and the mean loss of the last logged window, trained parameters,
/// and per converted layer (in plan order) the same two losses, so a layer that did not learn shows.
/// </summary>
public sealed record TransferReport(int Steps, double FirstLoss, double LastLoss, long TrainedParameters, TimeSpan Elapsed,
    IReadOnlyList<(int Layer, double First, double Last)>? LayerLosses = null);

/// <summary>
/// Stage 1 of the conversion, attention transfer (LoLCATs §3.1, Hedgehog §3.2): the softmax model runs frozen; at every
/// converted layer the linear mixer of the converted model reads the softmax model's mixer input and is trained to give
/// the softmax mixer's output (output MSE × 1000 by default) and/or its attention weights (cross-entropy, Hedgehog maps
/// only). Every converted layer trains at once from one teacher forward per batch: each layer's input is the teacher's
/// hidden state at that depth (layer-local, as LoLCATs), so an error in one layer never reaches the next and the layers
/// need no order. Only the converted model's new parameters (feature maps, window factors, …) train; everything else
/// stays frozen.
/// </summary>
public static class AttentionTransfer
{
    /// <summary>Runs stage 1 on the rows of <paramref name="rows"/> (cycled until <see cref="TransferSettings.Steps"/>).</summary>
    public static TransferReport Run(SequenceModel softmax, SequenceModel converted, IReadOnlyList<ConvertedLayer> plan, IReadOnlyList<string> newParameters,
        Func<IEnumerable<Example>> rows, TransferSettings s, Device device, ITrainingLog log, Action? checkCancel = null)
    {
        var sw = Stopwatch.StartNew();
        var layers = plan.Select(p => p.Layer).ToHashSet();
        var trainable = converted.named_parameters()
            .Where(p => newParameters.Contains(p.name) && layers.Contains(LayerOf(p.name)))
            .Select(p => p.parameter).ToList();
        long count = trainable.Sum(p => p.numel());
        if (trainable.Count == 0 || s.Steps == 0)
        {
            log.Info(trainable.Count == 0
                ? "Stage 1/2 (attention transfer): the new mechanism has no new parameters to fit; skipped."
                : "Stage 1/2 (attention transfer): TransferSteps = 0; skipped.");
            return new TransferReport(0, double.NaN, double.NaN, count, sw.Elapsed);
        }
        if (s.AttentionCrossEntropyWeight > 0)
            foreach (var p in plan.Where(p => converted.Blocks[p.Layer].Mixer is not HedgehogMixer))
                throw new ArgumentException($"AttentionCrossEntropyWeight needs explicit feature maps to form attention weights; layer {p.Layer} is '{p.Name}'. " +
                                            "Use it with Attention = \"hedgehog\", or set it to 0 and train on the output MSE.");

        var frozen = Freeze(softmax, converted, trainable);
        log.Info($"Stage 1/2 (attention transfer): layers {string.Join(",", plan.Select(p => p.Layer))} → {string.Join(", ", plan.Select(p => p.Name).Distinct())}; " +
                 $"training {count:N0} new parameters ({trainable.Count} tensors) for {s.Steps} steps, batch {s.BatchSize}, AdamW lr {s.LearningRate:G3}, " +
                 $"loss {s.OutputMseWeight:G4}·MSE(output){(s.AttentionCrossEntropyWeight > 0 ? $" + {s.AttentionCrossEntropyWeight:G4}·CE(attention)" : "")}.");
        try
        {
            using var optimizer = optim.AdamW(trainable, lr: s.LearningRate, weight_decay: 0);
            var rng = new Random(s.Seed);
            int step = 0;
            double window = 0, first = double.NaN, last = double.NaN; int windowCount = 0;
            var layerWindow = new double[layers.Count];
            var layerFirst = new double[layers.Count];
            var layerLast = new double[layers.Count];
            while (step < s.Steps)
            {
                bool any = false;
                foreach (var batchRows in Batching.Bucketed(rows(), s.BatchSize, s.MaxBatchTokens, Math.Max(256, s.BatchSize * 16), rng))
                {
                    any = true;
                    checkCancel?.Invoke();
                    double lr = LearningRateSchedule.At(step, s.Steps, 0, s.LearningRate, LearningRateDecay.Cosine, 0.1);
                    foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                    using (var scope = NewDisposeScope())
                    {
                        using var batch = Batching.Collate(batchRows, device, s.PadId, 0, 0, null, null);
                        var perLayer = LayerLosses(softmax, converted, layers, batch, s);
                        var loss = stack(perLayer).mean();
                        loss.backward();
                        optimizer.step();
                        optimizer.zero_grad();
                        double value = loss.item<float>();
                        var values = stack(perLayer).detach().cpu().data<float>().ToArray();
                        if (step == 0) { first = value; for (int l = 0; l < values.Length; l++) layerFirst[l] = values[l]; }
                        window += value; windowCount++;
                        for (int l = 0; l < values.Length; l++) layerWindow[l] += values[l];
                    }
                    step++;
                    bool report = step == s.Steps || (s.LogEverySteps > 0 && step % s.LogEverySteps == 0);
                    if (report)
                    {
                        last = window / windowCount;
                        for (int l = 0; l < layerLast.Length; l++) { layerLast[l] = layerWindow[l] / windowCount; layerWindow[l] = 0; }
                        log.Info($"Attention transfer: step {step}/{s.Steps}, loss {last:G4} (per layer {string.Join(" ", layerLast.Select(v => v.ToString("G3")))}), lr {lr:G3}, {sw.Elapsed:hh\\:mm\\:ss}.");
                        window = 0; windowCount = 0;
                    }
                    if (step >= s.Steps) break;
                }
                if (!any) throw new InvalidOperationException("Attention transfer found no text rows (ConversionOptions.TransferData, or the training data, is empty).");
            }
            log.Info($"Stage 1/2 done in {sw.Elapsed:hh\\:mm\\:ss}: attention-transfer loss {first:G4} (first batch) → {last:G4} (mean since the previous report).");
            var order = layers.Order().ToList();
            return new TransferReport(step, first, last, count, sw.Elapsed, order.Select((layer, l) => (layer, layerFirst[l], layerLast[l])).ToList());
        }
        finally
        {
            Unfreeze(frozen);
        }
    }

    /// <summary>Mean stage-1 loss over <paramref name="rows"/> without training (e.g. before and after <see cref="Run"/>).</summary>
    public static double Evaluate(SequenceModel softmax, SequenceModel converted, IReadOnlyList<ConvertedLayer> plan, IEnumerable<Example> rows,
        TransferSettings s, Device device)
        => EvaluateLayers(softmax, converted, plan, rows, s, device).Values.DefaultIfEmpty(double.NaN).Average();

    /// <summary>Mean stage-1 loss of each converted layer over <paramref name="rows"/> without training (layer → loss).</summary>
    public static IReadOnlyDictionary<int, double> EvaluateLayers(SequenceModel softmax, SequenceModel converted, IReadOnlyList<ConvertedLayer> plan,
        IEnumerable<Example> rows, TransferSettings s, Device device)
    {
        var layers = plan.Select(p => p.Layer).ToHashSet();
        bool wasTraining = converted.training;
        softmax.eval();
        converted.eval();
        var sum = new double[layers.Count]; long n = 0;
        using (no_grad())
        {
            foreach (var batchRows in Batching.Bucketed(rows, s.BatchSize, s.MaxBatchTokens, s.BatchSize * 16, null))
            {
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(batchRows, device, s.PadId, 0, 0, null, null);
                var values = stack(LayerLosses(softmax, converted, layers, batch, s)).cpu().data<float>().ToArray();
                for (int l = 0; l < values.Length; l++) sum[l] += values[l] * batchRows.Count;
                n += batchRows.Count;
            }
        }
        if (wasTraining) converted.train();
        return layers.Order().Select((layer, l) => (layer, l)).ToDictionary(x => x.layer, x => n == 0 ? double.NaN : sum[x.l] / n);
    }

    /// <summary>
    /// Per converted layer (in layer order), the weighted output MSE (over real tokens) and attention CE (over real
    /// queries), from one teacher forward: each student mixer reads the teacher's input at its depth.
    /// </summary>
    private static List<Tensor> LayerLosses(SequenceModel softmax, SequenceModel converted, HashSet<int> layers, ModelBatch batch, TransferSettings s)
    {
        Tensor x, mask;
        using (no_grad()) (x, mask) = softmax.Embed(batch);
        var teacherBlocks = softmax.Blocks;
        var studentBlocks = converted.Blocks;
        var m = mask.unsqueeze(-1).to(ScalarType.Float32);
        var realTokens = m.sum().clamp_min(1);
        var losses = new List<Tensor>();
        for (int i = 0; i < teacherBlocks.Count; i++)
        {
            var block = teacherBlocks[i];
            if (layers.Contains(i))
            {
                Tensor input, target;
                using (no_grad())
                {
                    input = block.MixerInput(x);
                    target = block.Mixer.forward(input, mask).to(ScalarType.Float32);
                }
                var mixer = studentBlocks[i].Mixer;
                var loss = zeros(1, device: x.device).squeeze();
                if (s.OutputMseWeight > 0)
                {
                    var predicted = mixer.forward(input, mask).to(ScalarType.Float32);
                    loss = loss + s.OutputMseWeight * ((predicted - target).square() * m).sum() / (realTokens * x.shape[^1]);
                }
                if (s.AttentionCrossEntropyWeight > 0)
                    loss = loss + s.AttentionCrossEntropyWeight * AttentionCrossEntropy((HedgehogMixer)mixer, input, mask);
                losses.Add(loss);
            }
            if (losses.Count == layers.Count) break;   // the blocks above the last converted layer feed no target
            using (no_grad()) x = ((nn.Module<Tensor, Tensor?, Tensor>)block).forward(x, mask);
        }
        return losses;
    }

    /// <summary>
    /// Hedgehog's loss: cross-entropy between the softmax attention weights and the linear attention weights
    /// φ(q)·φ(k) / Σ φ(q)·φ(k) of the same (frozen) projections, over real keys, averaged over real queries and heads.
    /// </summary>
    internal static Tensor AttentionCrossEntropy(HedgehogMixer mixer, Tensor input, Tensor mask)
    {
        var p = mixer.named_parameters().ToDictionary(t => t.name, t => (Tensor)t.parameter);
        Tensor Project(string name) => nn.functional.linear(input, p[name + ".weight"], p.GetValueOrDefault(name + ".bias"));
        int h = mixer.Config.NumHeads;
        var q = Heads.Split(Project("q_proj"), h);
        var k = Heads.Split(Project("k_proj"), h);
        if (mixer.QueryKeyTransform is { } rotate) { q = rotate(q); k = rotate(k); }
        var keys = mask.view(mask.shape[0], 1, 1, mask.shape[1]);
        Tensor target;
        using (no_grad())
        {
            var scores = q.matmul(k.transpose(-1, -2)).to(ScalarType.Float32) / Math.Sqrt(q.shape[^1]);
            target = scores.masked_fill(keys.logical_not(), double.NegativeInfinity).softmax(-1);
        }
        var kernel = mixer.QueryMap.forward(q).matmul(mixer.KeyMap.forward(k).transpose(-1, -2)).to(ScalarType.Float32) * keys.to(ScalarType.Float32);
        var predicted = kernel / kernel.sum(-1, keepdim: true).clamp_min(1e-12);
        var ce = -(target * predicted.clamp_min(1e-12).log()).sum(-1);                 // [B, H, T]
        var queries = mask.unsqueeze(1).to(ScalarType.Float32);
        return (ce * queries).sum() / (queries.sum() * h).clamp_min(1);
    }

    private static int LayerOf(string parameterName)
    {
        var parts = parameterName.Split('.');
        return parts.Length > 2 && parts[0] == "blocks" && parts[2] == "mixer" && int.TryParse(parts[1], out int i) ? i : -1;
    }

    private static List<Parameter> Freeze(SequenceModel softmax, SequenceModel converted, List<Parameter> trainable)
    {
        var keep = trainable.Select(p => p.Handle).ToHashSet();
        var frozen = new List<Parameter>();
        foreach (var p in softmax.parameters().Concat(converted.parameters()))
        {
            if (keep.Contains(p.Handle) || !p.requires_grad) continue;
            p.requires_grad_(false);
            frozen.Add(p);
        }
        softmax.eval();
        converted.eval();
        return frozen;
    }

    private static void Unfreeze(List<Parameter> frozen)
    {
        foreach (var p in frozen) p.requires_grad_(true);
    }
}

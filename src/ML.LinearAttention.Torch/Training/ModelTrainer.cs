using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>How rows become tensors for one model.</summary>
/// <param name="Labels">Label kind (decides the loss: cross-entropy or MSE on standardised targets).</param>
/// <param name="PadId">Padding token id.</param>
/// <param name="NumericFeatures">F for numeric-sequence input, else 0.</param>
/// <param name="SideLength">Side-feature length, 0 = none.</param>
/// <param name="SideFill">Values that replace missing side features (training means).</param>
public sealed record CollateSpec(LabelKind Labels, int PadId, int NumericFeatures, int SideLength, float[]? SideFill);

/// <summary>Outcome of a training run.</summary>
/// <remarks><see cref="Elapsed"/> is this process's time; after a resume, <see cref="ResumedFromStep"/> and
/// <see cref="TokensBeforeResume"/> say what earlier processes had trained.</remarks>
public sealed record TrainingReport(int Epochs, long Steps, double FinalTrainLoss, double? BestValidationMetric, int? BestEpoch, bool StoppedEarly, TimeSpan Elapsed)
{
    /// <summary>Optimizer step of the checkpoint this run resumed from; null when it started afresh.</summary>
    public long? ResumedFromStep { get; init; }
    /// <summary>Real tokens (or images) trained on over the whole run, the resumed part included.</summary>
    public long TokensSeen { get; init; }
    /// <summary>Of <see cref="TokensSeen"/>, those trained before the checkpoint this run resumed from (0 for a fresh run).</summary>
    public long TokensBeforeResume { get; init; }
    /// <summary>Validation log-loss of the restored (best) epoch, before temperature scaling; null without validation rows or for regression.</summary>
    public double? BestValidationLogLoss { get; init; }
    /// <summary>Temperature fit on the validation rows (divide the logits by it before the softmax); null when none was fit.</summary>
    public double? Temperature { get; init; }
    /// <summary>Validation log-loss after temperature scaling; null when no temperature was fit.</summary>
    public double? CalibratedValidationLogLoss { get; init; }
    /// <summary>Epochs the run was allowed (its MaxEpochs, as resolved when the options left it to Fit); a run that stopped
    /// early has <see cref="Epochs"/> below it.</summary>
    public int MaxEpochs { get; init; }
}

/// <summary>
/// The training loop: AdamW with decoupled weight decay (none on norms, biases and embeddings' padding), warm-up then
/// cosine/linear decay, gradient clipping and accumulation, a dispose scope per batch, seeded order, early stopping on
/// a validation stream with the best weights restored, progress to the log and an <see cref="IProgress{T}"/>, and
/// cancellation checked before every batch.
/// </summary>
public static class ModelTrainer
{
    public static TrainingReport Train(TrainableModel model, CollateSpec spec, Func<IEnumerable<Example>> trainRows, long trainRowCount,
        Func<IEnumerable<Example>>? validationRows, TrainingSettings s, Device device, ITrainingLog log, Func<bool>? hostCanceled = null)
    {
        s.Validate();
        if (s.Distributed is { } dist)                                                      // multi-GPU data parallel (null = one device)
        {
            dist.Validate();
            if (s.CheckpointDirectory is not null)
                throw new NotSupportedException("Resumable checkpoints (CheckpointDirectory) are not supported with distributed training yet; unset one of them.");
        }
        using var run = new TrainingRun(model, spec, trainRows, trainRowCount, validationRows, s, device, log, hostCanceled);
        return run.Run();
    }

    /// <summary>
    /// Training batches collated on the host, made on two background threads while the device computes: one reads and
    /// tokenizes rows (up to a shuffle buffer ahead), the other buckets, pads and (for CUDA) pins them, a few batches
    /// ahead. The batches are exactly those of a plain <see cref="Batching.Bucketed"/> pass with the same seed.
    /// </summary>
    internal static IEnumerable<ModelBatch> HostBatches(IEnumerable<Example> rows, CollateSpec spec, TrainingSettings s, Random rng, bool pin,
        Distributed.ICollectives? ranks = null)
    {
        var rowsAhead = Prefetch.Ahead(rows, Math.Max(s.BatchSize, s.ShuffleBufferRows), name: "LinearAttention rows");
        var bucketed = Batching.Bucketed(rowsAhead, s.BatchSize, s.MaxBatchTokens, s.ShuffleBufferRows, rng);
        if (ranks is not null) bucketed = Distributed.DataParallel.Shard(bucketed, ranks.Rank, ranks.WorldSize); // same order on every rank, every W-th batch
        var batches = bucketed.Select(b =>
        {
            var host = Batching.Collate(b, CPU, spec.PadId, spec.NumericFeatures, spec.SideLength, spec.SideFill, spec.Labels);
            return pin ? BatchTransfer.Pinned(host) : host;
        });
        return Prefetch.Ahead(batches, PrefetchBatches, b => b.Dispose(), "LinearAttention batches");
    }

    /// <summary>Collated batches kept ready ahead of the device.</summary>
    internal const int PrefetchBatches = 4;

    internal static Tensor Loss(TrainableModel model, ModelBatch batch, LabelKind labels, double labelSmoothing = 0)
    {
        var output = model.Forward(batch).to(ScalarType.Float32);
        return labels == LabelKind.Key
            ? nn.functional.cross_entropy(output, batch.Labels!, label_smoothing: labelSmoothing)
            : nn.functional.mse_loss(output.squeeze(-1), model.StandardizeTarget(batch.Labels!));
    }

    /// <summary>
    /// AdamW over the trainable parameters of <paramref name="model"/>: decoupled weight decay on matrices, none on
    /// norms, biases and embeddings.
    /// </summary>
    internal static AdamW CreateOptimizer(TrainableModel model, TrainingSettings s)
    {
        var named = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (named.Count == 0) throw new InvalidOperationException("The model has no trainable parameter (every parameter has requires_grad = false).");
        static bool Decays((string name, Parameter parameter) p) => p.parameter.dim() >= 2 && !p.name.Contains("embedding");
        var decay = named.Where(Decays).Select(p => p.parameter).ToList();
        var noDecay = named.Where(p => !Decays(p)).Select(p => p.parameter).ToList();
        var groups = new List<AdamW.ParamGroup>();
        if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, lr: s.LearningRate, weight_decay: s.WeightDecay));
        if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, lr: s.LearningRate, weight_decay: 0));
        return torch.optim.AdamW(groups, lr: s.LearningRate, weight_decay: s.WeightDecay);
    }

    internal static void OptimizerStep(AdamW optimizer, List<Parameter> parameters, TrainingSettings s, ref long step, long totalSteps, long warmup,
        Distributed.DistributedOptions? dist = null, MixedPrecision? mixedPrecision = null)
    {
        double lr = LearningRateSchedule.At(step, totalSteps, warmup, s.LearningRate, s.Decay, s.FinalLearningRateRatio);
        foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
        if (dist is not null) // averaged over the ranks before clipping, so every rank clips and steps identically
            Distributed.DataParallel.AllReduceGradients(parameters, dist.Collectives, (long)dist.BucketMegabytes << 20, dist.ReduceInBFloat16);
        bool gradientsInCopy = mixedPrecision?.GradientsStayInCopy == true;
        if (dist is null && CpuAdamW.CanStep(optimizer, mixedPrecision))
        {
            // CPU: clipping factor, AdamW and releasing the gradients in one pass per tensor (CpuFastPaths.FusedAdamW);
            // with the gradients in the bf16 copy, the same pass updates the copy's weights.
            IEnumerable<Parameter> withGradients = gradientsInCopy ? mixedPrecision!.Copies : parameters;
            CpuAdamW.Step(optimizer, s.MaxGradientNorm > 0 ? GradientClipping.CoefficientOnHost(withGradients, s.MaxGradientNorm) : 1f, mixedPrecision);
            if (!gradientsInCopy) mixedPrecision?.SyncWeights();
            step++;
            return;
        }
        if (gradientsInCopy) mixedPrecision!.MoveGradients();
        UpdateWeights(optimizer, parameters, s, mixedPrecision);
        optimizer.zero_grad();
        step++;
    }

    /// <summary>
    /// Clipping, the AdamW update of the (fp32 master) parameters and, under mixed precision, the copy of the updated
    /// weights into the bf16 model: on CUDA as one multi-tensor kernel (<see cref="FusedAdamWStep"/>), else per tensor.
    /// </summary>
    internal static void UpdateWeights(AdamW optimizer, List<Parameter> parameters, TrainingSettings s, MixedPrecision? mixedPrecision)
    {
        if (parameters.Count > 0 && parameters[0].device_type == DeviceType.CUDA && FusedAdamWStep.TryStep(optimizer, s, mixedPrecision)) return;
        if (s.MaxGradientNorm > 0) GradientClipping.ClipByGlobalNorm(parameters, s.MaxGradientNorm);
        optimizer.step();
        mixedPrecision?.SyncWeights();
    }

    /// <summary>Accuracy (classification) or RMSE in label units (regression) of <paramref name="model"/> on a stream.</summary>
    public static double Evaluate(TrainableModel model, CollateSpec spec, IEnumerable<Example> rows, int batchSize, long maxBatchTokens, Device device, Action? checkCancel = null)
    {
        bool wasTraining = model.training;
        model.eval();
        double sum = 0; long n = 0;
        using (torch.no_grad())
        {
            foreach (var batchRows in Batching.Bucketed(rows, batchSize, maxBatchTokens, batchSize * 16, null))
            {
                checkCancel?.Invoke();
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(batchRows, device, spec.PadId, spec.NumericFeatures, spec.SideLength, spec.SideFill, spec.Labels);
                var output = model.Forward(batch);
                if (spec.Labels == LabelKind.Key) sum += output.argmax(-1).eq(batch.Labels!).sum().item<long>();
                else sum += (model.DestandardizeTarget(output.squeeze(-1)) - batch.Labels!).square().sum().item<float>();
                n += batchRows.Count;
            }
        }
        if (wasTraining) model.train();
        if (n == 0) return double.NaN;
        return spec.Labels == LabelKind.Key ? sum / n : Math.Sqrt(sum / n);
    }

    internal static Dictionary<string, Tensor> Snapshot(TrainableModel model)
    {
        using var _ = torch.no_grad();
        return model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    internal static void DisposeAll(Dictionary<string, Tensor>? weights)
    {
        if (weights is null) return;
        foreach (var t in weights.Values) t.Dispose();
        weights.Clear();
    }

    /// <summary>Where a run stands when it reports progress.</summary>
    /// <param name="ResumedFromStep">Step of the checkpoint this process resumed from (null = a fresh run).</param>
    /// <param name="TokensBeforeResume">Tokens trained by earlier processes, before that checkpoint.</param>
    /// <param name="TrainingTime">Time this process has spent training (the throughput's clock).</param>
    /// <param name="Elapsed">Time since this process began the run (the ETA's clock).</param>
    internal readonly record struct ProgressPoint(int Epoch, long Step, long TotalSteps, double Loss, long TokensSeen, long? ResumedFromStep,
        long TokensBeforeResume, TimeSpan TrainingTime, TimeSpan Elapsed, double? Metric, double? LogLoss = null, double? CalibratedLogLoss = null);

    internal static void Report(ITrainingLog log, TrainingSettings s, ProgressPoint p, AdamW optimizer, bool endOfEpoch, string metricName)
    {
        double lr = optimizer.ParamGroups.First().LearningRate;
        // Only what this process trained counts: after a resume, the checkpoint's tokens and steps took no time here.
        long tokensHere = p.TokensSeen - p.TokensBeforeResume;
        long stepsHere = p.Step - (p.ResumedFromStep ?? 0);
        double tps = tokensHere / Math.Max(1e-9, p.TrainingTime.TotalSeconds);
        var eta = stepsHere > 0 ? TimeSpan.FromSeconds(p.Elapsed.TotalSeconds / stepsHere * Math.Max(0, p.TotalSteps - p.Step)) : TimeSpan.Zero;
        string head = endOfEpoch ? $"Epoch {p.Epoch}/{s.MaxEpochs} done:" : $"Epoch {p.Epoch}/{s.MaxEpochs}";
        string m = p.Metric is null ? "" : $", {metricName} {p.Metric:G4}" + (p.LogLoss is null ? "" : $", validation log-loss {p.LogLoss:F4}")
                   + (p.CalibratedLogLoss is null ? "" : $" ({p.CalibratedLogLoss:F4} calibrated)");
        log.Info($"{head} step {p.Step}/{p.TotalSteps}, loss {p.Loss:F4}{m}, lr {lr:0.###e+00}, {tps:N0} {s.ThroughputUnit}/s, ETA {eta:hh\\:mm\\:ss}.");
        s.Progress?.Report(new TrainingProgress(p.Epoch, p.Step, p.TotalSteps, p.Loss, lr, tps, eta, p.Metric)
        {
            ResumedFromStep = p.ResumedFromStep, TokensSeen = p.TokensSeen, TokensBeforeResume = p.TokensBeforeResume, TrainingTime = p.TrainingTime,
        });
    }
}

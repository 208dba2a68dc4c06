using System.Diagnostics;
using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Where training messages go (the estimators forward them to MLContext.Log).</summary>
public interface ITrainingLog
{
    void Info(string message);
    void Warning(string message);
}

/// <summary>How rows become tensors for one model.</summary>
/// <param name="Labels">Label kind (decides the loss: cross-entropy or MSE on standardised targets).</param>
/// <param name="PadId">Padding token id.</param>
/// <param name="NumericFeatures">F for numeric-sequence input, else 0.</param>
/// <param name="SideLength">Side-feature length, 0 = none.</param>
/// <param name="SideFill">Values that replace missing side features (training means).</param>
public sealed record CollateSpec(LabelKind Labels, int PadId, int NumericFeatures, int SideLength, float[]? SideFill);

/// <summary>Outcome of a training run.</summary>
public sealed record TrainingReport(int Epochs, long Steps, double FinalTrainLoss, double? BestValidationMetric, int? BestEpoch, bool StoppedEarly, TimeSpan Elapsed);

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
        var dist = s.Distributed;                                                            // multi-GPU data parallel (null = one device)
        if (dist is not null)
        {
            dist.Validate();
            if (s.CheckpointDirectory is not null)
                throw new NotSupportedException("Resumable checkpoints (CheckpointDirectory) are not supported with distributed training yet; unset one of them.");
            if (dist.Collectives.Rank != 0) log = Distributed.DataParallel.SilentLog;       // only rank 0 logs
            Distributed.DataParallel.BroadcastState(model, dist.Collectives);                // identical starting weights
        }
        int worldSize = dist?.Collectives.WorldSize ?? 1;
        var sw = Stopwatch.StartNew();
        var token = s.CancellationToken;
        void CheckCancel()
        {
            if (token.IsCancellationRequested) throw new OperationCanceledException("Training was cancelled through the CancellationToken in the options.", token);
            if (hostCanceled?.Invoke() == true) throw new OperationCanceledException("Training was cancelled through MLContext (CancelExecution).");
        }

        // Only trainable parameters reach the optimizer and the clipping (the fine-tuning catalog freezes the rest).
        var named = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (named.Count == 0) throw new InvalidOperationException("The model has no trainable parameter (every parameter has requires_grad = false).");
        var decay = named.Where(p => p.parameter.dim() >= 2 && !p.name.Contains("embedding")).Select(p => p.parameter).ToList();
        var noDecay = named.Where(p => !(p.parameter.dim() >= 2 && !p.name.Contains("embedding"))).Select(p => p.parameter).ToList();
        var groups = new List<AdamW.ParamGroup>();
        if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, lr: s.LearningRate, weight_decay: s.WeightDecay));
        if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, lr: s.LearningRate, weight_decay: 0));
        using var optimizer = torch.optim.AdamW(groups, lr: s.LearningRate, weight_decay: s.WeightDecay);
        var parameters = named.Select(p => p.parameter).ToList();

        long batchesPerEpoch = Math.Max(1, (trainRowCount + s.BatchSize - 1) / s.BatchSize / worldSize);
        long stepsPerEpoch = Math.Max(1, (batchesPerEpoch + s.GradientAccumulationSteps - 1) / s.GradientAccumulationSteps);
        long totalSteps = stepsPerEpoch * s.MaxEpochs;
        if (s.MaxSteps > 0) totalSteps = Math.Min(totalSteps, s.MaxSteps);
        long warmup = (long)Math.Round(totalSteps * s.WarmupRatio);
        bool mixed = s.Precision == TrainingPrecision.BFloat16 || (s.Precision == TrainingPrecision.Auto && device.type == DeviceType.CUDA);
        using var mp = mixed ? new MixedPrecision(model, device) : null;
        var runner = mp?.Model ?? model;
        if (runner is SequenceModel sequenceRunner) sequenceRunner.CheckpointActivations = s.ActivationCheckpointing;
        bool cuda = device.type == DeviceType.CUDA;
        if (dist is not null) log.Info($"Data parallel over {worldSize} ranks ({dist.Collectives.GetType().Name}): each rank trains on every {worldSize}-th batch; gradients are averaged before clipping.");
        log.Info($"Training: {trainRowCount:N0} rows, batch {s.BatchSize} × {s.GradientAccumulationSteps} accumulation, up to {s.MaxEpochs} epoch(s) / {totalSteps:N0} optimizer steps " +
                 $"(warm-up {warmup}, {s.Decay} decay), AdamW lr {s.LearningRate:G3} wd {s.WeightDecay:G3}, device {device}, {(mixed ? "bf16 mixed precision" : "fp32")}, seed {s.Seed}.");

        var rng = new Random(s.Seed);
        long step = 0, micro = 0, tokensSeen = 0;
        double lastLoss = double.NaN; int lossCount = 0;
        Tensor? lossSum = null; // on the device, fp64: read back (one synchronisation) only when reported
        double TakeLoss()
        {
            double mean = lossSum is null || lossCount == 0 ? double.NaN : lossSum.item<double>() / lossCount;
            lossSum?.Dispose(); lossSum = null; lossCount = 0;
            return mean;
        }
        double? best = null; int? bestEpoch = null; int badEpochs = 0; bool stoppedEarly = false;
        Dictionary<string, Tensor>? bestWeights = null;
        bool higherIsBetter = spec.Labels == LabelKind.Key;
        int epoch = 0;
        var tokenClock = Stopwatch.StartNew();
        // Checkpoints (optional): resume where the last run stopped; each epoch then shuffles with its own seed.
        var sequenceModel = model as SequenceModel;                                         // checkpoints are for text/sequence models
        if (s.CheckpointDirectory is not null && sequenceModel is null)
            throw new NotSupportedException("Training checkpoints (CheckpointDirectory) are available for the text and sequence estimators only.");
        var checkpoints = s.CheckpointDirectory is null ? null
            : new TrainingCheckpoints(s.CheckpointDirectory, TrainingCheckpoints.Fingerprint(sequenceModel!.Config, s, trainRowCount), log);
        int firstEpoch = 1; long skipBatches = 0;
        if (checkpoints?.TryResume(sequenceModel!, optimizer, out bestWeights) is { } resumed)
        {
            mp?.SyncWeights();
            step = resumed.Step; tokensSeen = resumed.TokensSeen;
            best = resumed.Best; bestEpoch = resumed.BestEpoch; badEpochs = resumed.BadEpochs;
            firstEpoch = resumed.EpochComplete ? resumed.Epoch + 1 : resumed.Epoch;
            skipBatches = resumed.EpochComplete ? 0 : resumed.BatchesDoneInEpoch;
            stoppedEarly = resumed.EpochComplete && validationRows is not null && s.EarlyStoppingPatience > 0 && badEpochs >= s.EarlyStoppingPatience;
        }
        var oom = new OutOfMemoryRetry(log);
        try
        {
            for (epoch = firstEpoch; !stoppedEarly && epoch <= s.MaxEpochs && (s.MaxSteps <= 0 || step < s.MaxSteps); epoch++)
            {
                model.train();
                runner.train();
                optimizer.zero_grad();
                int pending = 0;
                long batchesDone = 0;
                var epochRng = checkpoints is null ? rng : new Random(TrainingCheckpoints.EpochSeed(s.Seed, epoch));
                foreach (var hostBatch in HostBatches(trainRows(), spec, s, epochRng, pin: cuda && BatchTransfer.UsePinnedMemory, dist?.Collectives))
                {
                    if (batchesDone < skipBatches) { batchesDone++; hostBatch.Dispose(); continue; } // consumed before the checkpoint we resumed from
                    CheckCancel();
                    using (var scope = NewDisposeScope())
                    {
                        using var batch = BatchTransfer.ToDevice(hostBatch, device, nonBlocking: cuda && BatchTransfer.UsePinnedMemory);
                        if (!ReferenceEquals(batch, hostBatch)) hostBatch.Dispose();
                        Tensor? batchLoss = null; // this batch's loss (weighted over pieces after an out-of-memory split)
                        oom.Run(batch, (piece, weight) =>
                        {
                            s.FaultInjection?.Invoke(piece);
                            var loss = Loss(runner, piece, spec.Labels);
                            (loss * (weight / s.GradientAccumulationSteps)).backward();
                            (runner as SequenceModel)?.ThrowIfCheckpointFailed();
                            mp?.MoveGradients();
                            var detached = loss.detach().to(ScalarType.Float64) * weight;
                            batchLoss = (batchLoss is null ? detached : batchLoss + detached).MoveToOuterDisposeScope(); // out of the piece's scope
                        }, () =>
                        {
                            // The failed attempt's partial gradients (and those of earlier batches of this accumulation group) are dropped.
                            optimizer.zero_grad(); runner.zero_grad();
                            batchLoss = null; pending = 0;
                        });
                        if (lossSum is null) lossSum = batchLoss!.clone().DetachFromDisposeScope();
                        else lossSum.add_(batchLoss!);
                        lossCount++;
                        tokensSeen += batch.RealTokens;
                    }
                    batchesDone++;
                    micro++; pending++;
                    if (pending < s.GradientAccumulationSteps) continue;
                    OptimizerStep(optimizer, parameters, s, ref step, totalSteps, warmup, dist);
                    mp?.SyncWeights();
                    pending = 0;
                    if (checkpoints is not null && s.CheckpointEverySteps > 0 && step % s.CheckpointEverySteps == 0)
                        checkpoints.Save(new CheckpointState(epoch, false, batchesDone, step, tokensSeen, best, bestEpoch, badEpochs), sequenceModel!, optimizer, bestWeights);
                    if (s.LogEverySteps > 0 && step % s.LogEverySteps == 0)
                    {
                        lastLoss = TakeLoss();
                        Report(log, s, epoch, step, totalSteps, lastLoss, optimizer, tokensSeen, tokenClock, sw, null);
                    }
                    if (s.MaxSteps > 0 && step >= s.MaxSteps) break;
                }
                if (pending > 0) { CheckCancel(); OptimizerStep(optimizer, parameters, s, ref step, totalSteps, warmup, dist); mp?.SyncWeights(); }
                skipBatches = 0;
                if (lossCount > 0) lastLoss = TakeLoss();

                double? metric = null;
                if (validationRows is not null)
                {
                    CheckCancel();
                    metric = Evaluate(model, spec, validationRows(), s.BatchSize, s.MaxBatchTokens, device, CheckCancel);
                    bool improved = best is null || (higherIsBetter ? metric > best : metric < best);
                    if (improved)
                    {
                        best = metric; bestEpoch = epoch; badEpochs = 0;
                        DisposeAll(bestWeights);
                        bestWeights = Snapshot(model);
                    }
                    else badEpochs++;
                }
                Report(log, s, epoch, step, totalSteps, lastLoss, optimizer, tokensSeen, tokenClock, sw, metric, endOfEpoch: true,
                    metricName: higherIsBetter ? "validation accuracy" : "validation RMSE");
                checkpoints?.Save(new CheckpointState(epoch, true, 0, step, tokensSeen, best, bestEpoch, badEpochs), sequenceModel!, optimizer, bestWeights);
                if (validationRows is not null && s.EarlyStoppingPatience > 0 && badEpochs >= s.EarlyStoppingPatience)
                {
                    log.Info($"Early stopping after epoch {epoch}: no validation improvement for {badEpochs} epoch(s); best {best:G4} at epoch {bestEpoch}.");
                    stoppedEarly = true;
                    break;
                }
            }
            if (bestWeights is not null)
            {
                using (torch.no_grad()) model.load_state_dict(bestWeights, strict: true);
                log.Info($"Restored the weights of epoch {bestEpoch} (best validation {(higherIsBetter ? "accuracy" : "RMSE")} {best:G4}).");
            }
            checkpoints?.DeleteAll(); // the run is complete: nothing left to resume
        }
        finally
        {
            lossSum?.Dispose();
            DisposeAll(bestWeights);
            model.eval();
        }
        return new TrainingReport(Math.Min(epoch, s.MaxEpochs), step, lastLoss, best, bestEpoch, stoppedEarly, sw.Elapsed);
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

    private static Tensor Loss(TrainableModel model, ModelBatch batch, LabelKind labels)
    {
        var output = model.Forward(batch).to(ScalarType.Float32);
        return labels == LabelKind.Key
            ? nn.functional.cross_entropy(output, batch.Labels!)
            : nn.functional.mse_loss(output.squeeze(-1), model.StandardizeTarget(batch.Labels!));
    }

    private static void OptimizerStep(AdamW optimizer, List<Parameter> parameters, TrainingSettings s, ref long step, long totalSteps, long warmup,
        Distributed.DistributedOptions? dist = null)
    {
        double lr = LearningRateSchedule.At(step, totalSteps, warmup, s.LearningRate, s.Decay, s.FinalLearningRateRatio);
        foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
        if (dist is not null) // averaged over the ranks before clipping, so every rank clips and steps identically
            Distributed.DataParallel.AllReduceGradients(parameters, dist.Collectives, (long)dist.BucketMegabytes << 20, dist.ReduceInBFloat16);
        if (s.MaxGradientNorm > 0) GradientClipping.ClipByGlobalNorm(parameters, s.MaxGradientNorm);
        optimizer.step();
        optimizer.zero_grad();
        step++;
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

    private static Dictionary<string, Tensor> Snapshot(TrainableModel model)
    {
        using var _ = torch.no_grad();
        return model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    private static void DisposeAll(Dictionary<string, Tensor>? weights)
    {
        if (weights is null) return;
        foreach (var t in weights.Values) t.Dispose();
        weights.Clear();
    }

    private static void Report(ITrainingLog log, TrainingSettings s, int epoch, long step, long totalSteps, double loss, AdamW optimizer,
        long tokensSeen, Stopwatch tokenClock, Stopwatch sw, double? metric, bool endOfEpoch = false, string metricName = "")
    {
        double lr = optimizer.ParamGroups.First().LearningRate;
        double tps = tokensSeen / Math.Max(1e-9, tokenClock.Elapsed.TotalSeconds);
        var eta = step > 0 ? TimeSpan.FromSeconds(sw.Elapsed.TotalSeconds / step * Math.Max(0, totalSteps - step)) : TimeSpan.Zero;
        string head = endOfEpoch ? $"Epoch {epoch}/{s.MaxEpochs} done:" : $"Epoch {epoch}/{s.MaxEpochs}";
        string m = metric is null ? "" : $", {metricName} {metric:G4}";
        log.Info($"{head} step {step}/{totalSteps}, loss {loss:F4}{m}, lr {lr:G3}, {tps:N0} {s.ThroughputUnit}/s, ETA {eta:hh\\:mm\\:ss}.");
        s.Progress?.Report(new TrainingProgress(epoch, step, totalSteps, loss, lr, tps, eta, metric));
    }
}

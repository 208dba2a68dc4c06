using System.Diagnostics;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// Trains the head of a model whose encoder is frozen (<c>linear_probe</c>, <c>moment_probing</c>) on features
/// computed once: one pass of the encoder over the training (and validation) rows, then many cheap epochs over the
/// cache with the method's own recipe (<see cref="FrozenHeadOptions"/>: AdamW, warm-up then cosine decay to zero,
/// weight decay on matrices only, label smoothing, gradient clipping). With a validation set the head of the best
/// epoch is kept. The estimators call <see cref="TryTrain"/> first and stream through <see cref="ModelTrainer"/> when
/// it returns null (another method, side features, checkpoints or data parallel asked for, or a cache too large).
/// </summary>
public static class FrozenHeadTrainer
{
    /// <summary>Trains the head on cached features, or returns null (with the reason logged when one applies) so
    /// that the caller trains the usual way.</summary>
    public static TrainingReport? TryTrain(SequenceModel model, CollateSpec spec, Func<IEnumerable<Example>> trainRows,
        Func<IEnumerable<Example>>? validationRows, TrainingSettings s, Device device, ITrainingLog log, Func<bool>? hostCanceled = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (FineTuningRegistry.OptionsOf(model.Config) is not FrozenHeadOptions { CacheFeatures: true } options) return null;
        if (ModelParameter.All(model).Any(p => p.Parameter.requires_grad && p.Part != ModelPart.Head))
        {
            log.Info("Frozen encoder: features are not cached because parameters outside the head train; the head trains through the encoder every epoch.");
            return null;
        }
        return TrainOnCache(model, options, spec, trainRows, validationRows, s, device, log, hostCanceled);
    }

    /// <summary>
    /// For a method whose options are <see cref="IHeadFirstOptions"/> with a recipe (MP+): trains its head alone on
    /// cached features, everything else it trains held still, and returns that stage's report; the caller then trains
    /// the whole method from there with <see cref="TrainingSettings.ScoreStartingWeights"/>, so that the head-only
    /// result stays unless an epoch beats it on validation. Null (the caller trains everything from the start) for other
    /// methods, or when the features cannot be cached (the reason is logged).
    /// </summary>
    public static TrainingReport? TryTrainHeadFirst(SequenceModel model, CollateSpec spec, Func<IEnumerable<Example>> trainRows,
        Func<IEnumerable<Example>>? validationRows, TrainingSettings s, Device device, ITrainingLog log, Func<bool>? hostCanceled = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (FineTuningRegistry.OptionsOf(model.Config) is not IHeadFirstOptions { HeadFirstRecipe: { CacheFeatures: true } recipe }) return null;
        var waiting = ModelParameter.All(model).Where(p => p.Parameter.requires_grad && p.Part != ModelPart.Head).Select(p => p.Parameter).ToList();
        log.Info($"Head first: the head trains alone on cached features of the frozen encoder ({waiting.Sum(p => p.numel()):N0} trainable parameter(s) outside it " +
                 "held still), then everything the method trains continues from it through the encoder, its result kept unless an epoch validates better (HeadFirst).");
        foreach (var p in waiting) p.requires_grad = false;
        try { return TrainOnCache(model, recipe, spec, trainRows, validationRows, s, device, log, hostCanceled); }
        finally { foreach (var p in waiting) p.requires_grad = true; }
    }

    private static TrainingReport? TrainOnCache(SequenceModel model, FrozenHeadOptions options, CollateSpec spec, Func<IEnumerable<Example>> trainRows,
        Func<IEnumerable<Example>>? validationRows, TrainingSettings s, Device device, ITrainingLog log, Func<bool>? hostCanceled)
    {
        string? reason =
            model.Config.SideFeatures > 0 ? "side features reach the head through a trained projection" :
            s.CheckpointDirectory is not null ? "resumable checkpoints (CheckpointDirectory) were asked for" :
            s.Distributed is not null ? "data-parallel training was asked for" : null;
        if (reason is not null)
        {
            log.Info($"Frozen encoder: features are not cached because {reason}; the head trains through the encoder every epoch.");
            return null;
        }
        options.ValidateRecipe();
        void CheckCancel()
        {
            if (s.CancellationToken.IsCancellationRequested) throw new OperationCanceledException("Training was cancelled through the CancellationToken in the options.", s.CancellationToken);
            if (hostCanceled?.Invoke() == true) throw new OperationCanceledException("Training was cancelled through MLContext (CancelExecution).");
        }

        var clock = Stopwatch.StartNew();
        bool withStates = model.ProbeHead?.ReadsTokenStates ?? false;
        long maxBytes = (long)options.CacheMegabytes << 20;
        using var train = FrozenFeatures.Compute(model, trainRows(), spec, s.BatchSize, s.MaxBatchTokens, device, withStates, maxBytes, CheckCancel);
        using var validation = train is null || validationRows is null ? null
            : FrozenFeatures.Compute(model, validationRows(), spec, s.BatchSize, s.MaxBatchTokens, device, withStates, maxBytes - train.Bytes, CheckCancel);
        if (train is null || (validationRows is not null && validation is null))
        {
            log.Info($"Frozen encoder: the cached features would exceed CacheMegabytes = {options.CacheMegabytes:N0}; the head trains through the encoder every epoch " +
                     "(raise CacheMegabytes to cache them).");
            return null;
        }
        if (train.Count == 0) throw new InvalidOperationException("The training data has no row to train the head on.");
        log.Info($"Frozen encoder: features of {train.Count:N0} training row(s){(validation is null ? "" : $" and {validation.Count:N0} validation row(s)")} " +
                 $"computed once in {clock.Elapsed:hh\\:mm\\:ss} ({train.Tokens:N0} tokens, {(train.Bytes + (validation?.Bytes ?? 0)) / (1 << 20):N0} MiB cached" +
                 $"{(withStates ? ", token states included" : ", pooled vectors only")}).");
        return new Run(model, spec, options, s, device, log, CheckCancel, clock).Train(train, validation);
    }

    private sealed class Run
    {
        private readonly SequenceModel _model;
        private readonly CollateSpec _spec;
        private readonly FrozenHeadOptions _o;
        private readonly TrainingSettings _s;
        private readonly Device _device;
        private readonly ITrainingLog _log;
        private readonly Action _checkCancel;
        private readonly Stopwatch _clock;

        public Run(SequenceModel model, CollateSpec spec, FrozenHeadOptions options, TrainingSettings s, Device device, ITrainingLog log, Action checkCancel, Stopwatch clock)
            => (_model, _spec, _o, _s, _device, _log, _checkCancel, _clock) = (model, spec, options, s, device, log, checkCancel, clock);

        private bool Classifies => _spec.Labels == LabelKind.Key;

        private delegate Tensor HeadOutput(Tensor states, Tensor mask, Tensor pooled);

        /// <summary>The best validation epoch so far, over every stage: the lowest calibrated validation log-loss
        /// (classification; on a hundred validation rows accuracy moves in whole rows, and an epoch that gains one of
        /// them by chance would replace a better head) or RMSE (regression). Metric is that epoch's accuracy.</summary>
        private sealed class Best : IDisposable
        {
            /// <summary>Smallest drop of the validation log-loss that counts as an improvement (float noise does not).</summary>
            private const double MinLogLossImprovement = 1e-4;
            public double? Metric;
            public double Loss = double.PositiveInfinity;
            public int? Epoch;
            public Dictionary<string, Tensor>? Weights;
            public void Dispose() => DisposeAll(Weights);

            public bool IsBeatenBy(double metric, double loss, bool classifies)
                => Metric is not { } m || (classifies ? loss < Loss - MinLogLossImprovement : metric < m);
        }

        public TrainingReport Train(FrozenFeatures train, FrozenFeatures? validation)
        {
            var named = _model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
            int batchSize = _s.BatchSize * _s.GradientAccumulationSteps;
            long stepsPerEpoch = (train.Count + batchSize - 1) / batchSize;
            int epochs = _o.EpochsFor(stepsPerEpoch);
            using var best = new Best();
            long steps = 0;
            int epochsRun = 0;
            double lastLoss;
            double? temperature = null;
            try
            {
                if (_o.ProbeFirst && _model.ProbeHead is IProbeFirstHead staged)
                {
                    // Stage 1: the probe inside the head, alone (the rest silent and frozen); its epochs compete for
                    // "best" with the whole head's, so the head keeps the probe when the rest does not help.
                    staged.SilenceSecondOrder();
                    var firstNames = staged.FirstOrderParameterNames.Select(n => "probe_head." + n).ToHashSet();
                    var probe = named.Where(p => firstNames.Contains(p.name)).ToList();
                    _log.Info($"Frozen encoder, stage 1 of 2: the head's linear probe ({probe.Sum(p => p.parameter.numel()):N0} parameters) trains alone; " +
                              "stage 2 trains the whole head from it, and the best validation epoch of both is kept (ProbeFirst).");
                    foreach (var (name, p) in named) if (!firstNames.Contains(name)) p.requires_grad = false;
                    try { lastLoss = Stage(train, validation, probe, named, epochs, stepsPerEpoch, batchSize, staged.FirstOrderOutput, false, best, ref steps, ref epochsRun); }
                    finally { foreach (var (_, p) in named) p.requires_grad = true; }
                    AdoptFirstOrder(staged, named, best);
                }
                lastLoss = Stage(train, validation, named, named, epochs, stepsPerEpoch, batchSize, _model.Head, train.WithStates, best, ref steps, ref epochsRun);
                if (best.Weights is not null)
                {
                    using (no_grad())
                        foreach (var (name, p) in named) p.copy_(best.Weights[name]);
                    _log.Info($"Restored the head of epoch {best.Epoch} (best validation {(Classifies ? $"calibrated log-loss {best.Loss:G4}, accuracy" : "RMSE")} {best.Metric:G4}).");
                }
                if (validation is not null && Classifies && _s.CalibrateTemperature)
                {
                    // As the streaming trainer does: one temperature on the validation rows calibrates the probabilities.
                    var (_, logits, labels) = Score(validation, batchSize, _model.Head);
                    var (t, before, after) = ValidationScoring.BestTemperature(logits, labels);
                    temperature = t;
                    _log.Info($"Temperature scaling on {labels.Count:N0} validation rows: T = {t:F3}, validation log-loss {before:F4} → {after:F4} " +
                              "(probabilities are softmax(logits / T); predictions are unchanged).");
                }
            }
            finally
            {
                _model.eval();
            }
            return new TrainingReport(epochsRun, steps, lastLoss, best.Metric, best.Epoch, false, _clock.Elapsed) { TokensSeen = train.Tokens, MaxEpochs = epochsRun, CalibratedValidationLogLoss = Classifies && best.Metric is not null ? best.Loss : null, Temperature = temperature };
        }

        /// <summary>One stage: <paramref name="epochs"/> epochs of AdamW (warm-up, cosine to zero) over
        /// <paramref name="trainable"/>, the head's output given by <paramref name="head"/> (batches of similar lengths when it <paramref name="readsStates"/>); updates <paramref name="best"/>
        /// with a snapshot of <paramref name="headParameters"/> (every parameter of the head). Returns the last epoch's mean loss.</summary>
        private double Stage(FrozenFeatures train, FrozenFeatures? validation, List<(string name, Parameter parameter)> trainable,
            List<(string name, Parameter parameter)> headParameters, int epochs, long stepsPerEpoch, int batchSize, HeadOutput head, bool readsStates, Best best, ref long steps, ref int epochsRun)
        {
            var decay = trainable.Where(p => p.parameter.dim() >= 2).Select(p => p.parameter).ToList();
            var noDecay = trainable.Where(p => p.parameter.dim() < 2).Select(p => p.parameter).ToList();
            var groups = new List<AdamW.ParamGroup>();
            if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, lr: _o.LearningRate, weight_decay: _o.WeightDecay));
            if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, lr: _o.LearningRate, weight_decay: 0));
            using var optimizer = torch.optim.AdamW(groups, lr: _o.LearningRate, weight_decay: _o.WeightDecay);
            var parameters = trainable.Select(p => p.parameter).ToList();

            long total = stepsPerEpoch * epochs, warmup = (long)Math.Round(total * _o.WarmupRatio), step = 0;
            _log.Info($"Frozen encoder: the head trains {epochs} epoch(s) / {total:N0} steps on the cache, batch {batchSize}, AdamW lr {_o.LearningRate:0.###e+00} " +
                      $"wd {_o.WeightDecay:G3}, warm-up {warmup} then cosine to 0{(Classifies ? $", label smoothing {_o.LabelSmoothing:G3}" : "")}.");
            var rng = new Random(_s.Seed);
            double lastLoss = double.NaN;
            int logEvery = Math.Max(1, epochs / 10);
            for (int epoch = 1; epoch <= epochs; epoch++)
            {
                _model.train();
                Tensor? lossSum = null;
                int batches = 0;
                foreach (var indices in Order(train, batchSize, rng, sortByLength: readsStates))
                {
                    _checkCancel();
                    using var scope = NewDisposeScope();
                    var (states, mask, pooled, labels) = train.Batch(indices, _spec.Labels, _device);
                    var output = head(states, mask, pooled).to(ScalarType.Float32);
                    var loss = Classifies
                        ? nn.functional.cross_entropy(output, labels, label_smoothing: _o.LabelSmoothing)
                        : nn.functional.mse_loss(output.squeeze(-1), _model.StandardizeTarget(labels));
                    loss.backward();
                    double lr = LearningRateSchedule.At(step, total, warmup, _o.LearningRate, LearningRateDecay.Cosine, 0);
                    foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
                    if (_s.MaxGradientNorm > 0) GradientClipping.ClipByGlobalNorm(parameters, _s.MaxGradientNorm);
                    optimizer.step();
                    optimizer.zero_grad();
                    step++;
                    var detached = loss.detach().to(ScalarType.Float64);
                    lossSum = lossSum is null ? detached.DetachFromDisposeScope() : lossSum.add_(detached);
                    batches++;
                }
                lastLoss = lossSum is null ? double.NaN : lossSum.item<double>() / batches;
                lossSum?.Dispose();
                epochsRun++;
                var (metric, validationLoss) = validation is null ? ((double?)null, double.NaN) : Evaluate(validation, batchSize, head);
                if (metric is { } m && best.IsBeatenBy(m, validationLoss, Classifies))
                {
                    (best.Metric, best.Loss, best.Epoch) = (m, validationLoss, epochsRun);
                    DisposeAll(best.Weights);
                    best.Weights = Snapshot(headParameters);
                }
                if (epoch % logEvery == 0 || epoch == epochs) Report(epochsRun, epoch, epochs, steps + step, steps + total, lastLoss, metric, validationLoss, optimizer, train.Tokens);
            }
            steps += step;
            return lastLoss;
        }

        /// <summary>Shuffled batches; of rows of similar length when <paramref name="sortByLength"/> (less padding for heads
        /// that read token states). The random draws are the same either way, so a stage that reads only the pooled
        /// vectors (ProbeFirst's stage 1) sees the linear probe's batches.</summary>
        private static IEnumerable<List<int>> Order(FrozenFeatures features, int batchSize, Random rng, bool sortByLength)
        {
            var order = Enumerable.Range(0, features.Count).ToArray();
            Batching.Shuffle(order, rng);
            var batches = new List<List<int>>();
            foreach (var chunk in order.Chunk(batchSize * 16))
            {
                var sorted = sortByLength ? chunk.OrderBy(features.LengthOf).ToArray() : chunk;
                batches.AddRange(sorted.Chunk(batchSize).Select(b => b.ToList()));
            }
            Batching.Shuffle(batches, rng);
            return batches;
        }

        /// <summary>Accuracy (classification) or RMSE in label units (regression) on cached features, and the loss that
        /// judges the epoch: the log-loss at the validation rows' best temperature (classification, as the streaming
        /// trainer judges epochs: it ranks heads by how well they order the classes, not by how confident label
        /// smoothing left them), the RMSE again for regression.</summary>
        private (double Metric, double Loss) Evaluate(FrozenFeatures features, int batchSize, HeadOutput head)
        {
            var (metric, logits, classes) = Score(features, batchSize, head);
            return Classifies ? (metric, ValidationScoring.BestTemperature(logits, classes).LogLossAfter) : (metric, metric);
        }

        /// <summary>Accuracy or RMSE, and for classification the logits (CPU) and labels of every row.</summary>
        private (double Metric, List<float[]> Logits, List<long> Labels) Score(FrozenFeatures features, int batchSize, HeadOutput head)
        {
            _model.eval();
            double sum = 0;
            var logits = new List<float[]>();
            var classes = new List<long>();
            using (no_grad())
                foreach (var indices in Enumerable.Range(0, features.Count).Chunk(batchSize))
                {
                    _checkCancel();
                    using var scope = NewDisposeScope();
                    var (states, mask, pooled, labels) = features.Batch(indices, _spec.Labels, _device);
                    var output = head(states, mask, pooled).to(ScalarType.Float32);
                    if (Classifies)
                    {
                        sum += output.argmax(-1).eq(labels).sum().item<long>();
                        // One copy of the batch's logits to the host, split into rows there.
                        var flat = output.cpu().data<float>().ToArray();
                        int k = (int)output.shape[1];
                        for (int i = 0; i < flat.Length; i += k) logits.Add(flat[i..(i + k)]);
                        classes.AddRange(labels.cpu().data<long>().ToArray());
                    }
                    else sum += (_model.DestandardizeTarget(output.squeeze(-1)) - labels).square().sum().item<float>();
                }
            _model.train();
            return (Classifies ? sum / features.Count : Math.Sqrt(sum / features.Count), logits, classes);
        }

        /// <summary>Between the stages: the head's weights, and the best stage-1 snapshot, become whole-head weights whose
        /// output is the probe's (<see cref="IProbeFirstHead.AdoptFirstOrder"/>), so that stage 2 starts from the probe and a
        /// restored stage-1 epoch scores as it validated.</summary>
        private static void AdoptFirstOrder(IProbeFirstHead staged, List<(string name, Parameter parameter)> named, Best best)
        {
            using var _ = no_grad();
            if (best.Weights is not null)
            {
                var current = Snapshot(named);
                foreach (var (name, p) in named) p.copy_(best.Weights[name]);
                staged.AdoptFirstOrder();
                DisposeAll(best.Weights);
                best.Weights = Snapshot(named);
                foreach (var (name, p) in named) p.copy_(current[name]);
                DisposeAll(current);
            }
            staged.AdoptFirstOrder();
        }

        /// <param name="epochsRun">Epochs over every stage so far (the progress report's epoch).</param>
        /// <param name="epoch">Epoch within this stage, of <paramref name="epochs"/> (the log line's).</param>
        private void Report(int epochsRun, int epoch, int epochs, long step, long total, double loss, double? metric, double validationLoss, AdamW optimizer, long tokens)
        {
            double lr = optimizer.ParamGroups.First().LearningRate;
            string m = metric is null ? "" : Classifies ? $", validation calibrated log-loss {validationLoss:F4}, accuracy {metric:G4}" : $", validation RMSE {metric:G4}";
            _log.Info($"Head epoch {epoch}/{epochs}: step {step}/{total}, loss {loss:F4}{m}, lr {lr:0.###e+00}.");
            var elapsed = _clock.Elapsed;
            var eta = TimeSpan.FromSeconds(elapsed.TotalSeconds / Math.Max(1, step) * Math.Max(0, total - step));
            _s.Progress?.Report(new TrainingProgress(epochsRun, step, total, loss, lr, tokens / Math.Max(1e-9, elapsed.TotalSeconds), eta, metric)
            {
                TokensSeen = tokens, TrainingTime = elapsed,
            });
        }

        private static Dictionary<string, Tensor> Snapshot(List<(string name, Parameter parameter)> named)
        {
            using var _ = no_grad();
            return named.ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope());
        }

        private static void DisposeAll(Dictionary<string, Tensor>? weights)
        {
            if (weights is null) return;
            foreach (var t in weights.Values) t.Dispose();
        }
    }
}

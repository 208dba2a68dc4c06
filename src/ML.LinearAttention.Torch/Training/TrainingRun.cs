using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// One call of <see cref="ModelTrainer.Train"/>, as named steps over the run's state: set up the optimizer and the
/// schedule, resume from a checkpoint, then per epoch train the batches, step the optimizer, validate, checkpoint and
/// decide on early stopping, and finally restore the best weights.
/// </summary>
internal sealed class TrainingRun : IDisposable
{
    private readonly TrainableModel _model;
    private readonly CollateSpec _spec;
    private readonly Func<IEnumerable<Example>> _trainRows;
    private readonly long _trainRowCount;
    private readonly Func<IEnumerable<Example>>? _validationRows;
    private readonly TrainingSettings _s;
    private readonly Device _device;
    private readonly ITrainingLog _log;
    private readonly Func<bool>? _hostCanceled;
    private readonly Distributed.DistributedOptions? _dist;
    private readonly Stopwatch _sw = Stopwatch.StartNew();
    private readonly Stopwatch _tokenClock = new();
    private readonly bool _cuda;
    private readonly bool _classification;

    private AdamW _optimizer = null!;
    private List<Parameter> _parameters = null!;
    private long _totalSteps, _warmup;
    private MixedPrecision? _mp;
    private TrainableModel _runner = null!;
    private TrainingCheckpoints? _checkpoints;
    private OutOfMemoryRetry _oom = null!;

    private long _step, _tokensSeen;
    private long _resumedStep, _resumedTokens; // what earlier processes trained: excluded from this run's throughput and ETA
    private bool _resumed;
    private double _lastLoss = double.NaN;
    private int _lossCount;
    private Tensor? _lossSum; // on the device, fp64: read back (one synchronisation) only when reported
    private double? _best;            // the early-stopping criterion: validation log-loss (classification) or RMSE
    private double? _bestMetric, _bestLogLoss; // accuracy (or RMSE) and log-loss of the best epoch, for the report
    private int? _bestEpoch;
    private int _badEpochs;
    private bool _stoppedEarly;
    private Dictionary<string, Tensor>? _bestWeights;
    private int _epoch, _firstEpoch = 1;
    private long _skipBatches;

    public TrainingRun(TrainableModel model, CollateSpec spec, Func<IEnumerable<Example>> trainRows, long trainRowCount,
        Func<IEnumerable<Example>>? validationRows, TrainingSettings s, Device device, ITrainingLog log, Func<bool>? hostCanceled)
    {
        (_model, _spec, _trainRows, _trainRowCount, _validationRows, _s, _device, _hostCanceled) = (model, spec, trainRows, trainRowCount, validationRows, s, device, hostCanceled);
        _dist = s.Distributed;
        _log = _dist is not null && _dist.Collectives.Rank != 0 ? TrainingLog.Silent : log;   // only rank 0 logs
        _cuda = device.type == DeviceType.CUDA;
        _classification = spec.Labels == LabelKind.Key;
    }

    private int WorldSize => _dist?.Collectives.WorldSize ?? 1;

    public TrainingReport Run()
    {
        if (_dist is not null) Distributed.DataParallel.BroadcastState(_model, _dist.Collectives); // identical starting weights
        SetUp();
        _tokenClock.Start();
        ResumeFromCheckpoint();
        try
        {
            ScoreStartingWeights();
            for (_epoch = _firstEpoch; !_stoppedEarly && _epoch <= _s.MaxEpochs && (_s.MaxSteps <= 0 || _step < _s.MaxSteps); _epoch++)
            {
                TrainEpoch();
                var score = Validate();
                Report(score?.Metric, endOfEpoch: true, score);
                _checkpoints?.Save(new CheckpointState(_epoch, true, 0, _step, _tokensSeen, _best, _bestEpoch, _badEpochs), _model, _optimizer, _bestWeights);
                if (ShouldStopEarly()) break;
            }
            RestoreBestWeights();
            FitTemperature();
            _checkpoints?.DeleteAll(); // the run is complete: nothing left to resume
        }
        finally
        {
            _lossSum?.Dispose();
            ModelTrainer.DisposeAll(_bestWeights);
            _model.eval();
        }
        return new TrainingReport(Math.Min(_epoch, _s.MaxEpochs), _step, _lastLoss, _bestMetric ?? (_classification ? null : _best), _bestEpoch, _stoppedEarly, _sw.Elapsed)
        {
            ResumedFromStep = _resumed ? _resumedStep : null, TokensSeen = _tokensSeen, TokensBeforeResume = _resumedTokens, MaxEpochs = _s.MaxEpochs,
            BestValidationLogLoss = _bestLogLoss, Temperature = _temperature?.T, CalibratedValidationLogLoss = _temperature?.After,
        };
    }

    private void CheckCancel()
    {
        var token = _s.CancellationToken;
        if (token.IsCancellationRequested) throw new OperationCanceledException("Training was cancelled through the CancellationToken in the options.", token);
        if (_hostCanceled?.Invoke() == true) throw new OperationCanceledException("Training was cancelled through MLContext (CancelExecution).");
    }

    /// <summary>The optimizer over the trainable parameters (the fine-tuning catalog freezes the rest), the schedule's
    /// length, mixed precision and the checkpoint directory.</summary>
    private void SetUp()
    {
        _optimizer = ModelTrainer.CreateOptimizer(_model, _s);
        _parameters = _model.parameters().Where(p => p.requires_grad).ToList();

        long batchesPerEpoch = Math.Max(1, (_trainRowCount + _s.BatchSize - 1) / _s.BatchSize / WorldSize);
        long stepsPerEpoch = Math.Max(1, (batchesPerEpoch + _s.GradientAccumulationSteps - 1) / _s.GradientAccumulationSteps);
        _totalSteps = stepsPerEpoch * _s.MaxEpochs;
        if (_s.MaxSteps > 0) _totalSteps = Math.Min(_totalSteps, _s.MaxSteps);
        _warmup = (long)Math.Round(_totalSteps * _s.WarmupRatio);
        bool mixed = MixedPrecision.Applies(_s.Precision, _cuda, _model);
        _mp = mixed ? new MixedPrecision(_model, _device) : null;
        if (_mp is not null) _mp.GradientsStayInCopy = !_cuda && _dist is null && _s.GradientAccumulationSteps == 1 && Runtime.CpuFastPaths.FusedAdamW;
        _runner = _mp?.Model ?? _model;
        _runner.CheckpointActivations = _s.ActivationCheckpointing;
        if (_dist is not null) _log.Info($"Data parallel over {WorldSize} ranks ({_dist.Collectives.GetType().Name}): each rank trains on every {WorldSize}-th batch; gradients are averaged before clipping.");
        _log.Info($"Training: {_trainRowCount:N0} rows, batch {_s.BatchSize} × {_s.GradientAccumulationSteps} accumulation, up to {_s.MaxEpochs} epoch(s) / {_totalSteps:N0} optimizer steps " +
                  $"(warm-up {_warmup}, {_s.Decay} decay), AdamW lr {_s.LearningRate:0.###e+00} wd {_s.WeightDecay:G3}, device {_device}, {(mixed ? "bf16 mixed precision" : "fp32")}, seed {_s.Seed}.");
        if (!_cuda && CpuLoadHint.Check(torch.get_num_threads()) is { } busy) _log.Warning(busy);
        if (!_cuda && mixed && _s.Precision == TrainingPrecision.Auto)
            _log.Info("Precision Auto: bf16 mixed precision (fp32 master weights) on this CPU, which multiplies bf16 matrices natively (AVX512-BF16 or AMX); " +
                      "for a model of this width it trains about 1.7 times as fast as fp32 with the same accuracy (docs/benchmarks/training-cpu.md). Precision = Float32 turns it off.");
        if (_s.CheckpointDirectory is not null && !_model.SupportsResumableCheckpoints)
            throw new NotSupportedException("Training checkpoints (CheckpointDirectory) are available for the text and sequence estimators only.");
        _checkpoints = _s.CheckpointDirectory is null ? null
            : new TrainingCheckpoints(_s.CheckpointDirectory, TrainingCheckpoints.Fingerprint(_model, _s, _trainRowCount), _log);
        _oom = new OutOfMemoryRetry(_log, _s.ActivationCheckpointing);
    }

    /// <summary>Continues where the last run of the same fingerprint stopped; each epoch then shuffles with its own seed.</summary>
    private void ResumeFromCheckpoint()
    {
        if (_checkpoints?.TryResume(_model, _optimizer, out _bestWeights) is not { } resumed) return;
        _mp?.SyncWeights();
        _step = resumed.Step; _tokensSeen = resumed.TokensSeen;
        (_resumed, _resumedStep, _resumedTokens) = (true, resumed.Step, resumed.TokensSeen);
        _best = resumed.Best; _bestEpoch = resumed.BestEpoch; _badEpochs = resumed.BadEpochs;
        _firstEpoch = resumed.EpochComplete ? resumed.Epoch + 1 : resumed.Epoch;
        _skipBatches = resumed.EpochComplete ? 0 : resumed.BatchesDoneInEpoch;
        _stoppedEarly = resumed.EpochComplete && _validationRows is not null && _s.EarlyStoppingPatience > 0 && _badEpochs >= _s.EarlyStoppingPatience;
    }

    private void TrainEpoch()
    {
        _model.train();
        _runner.train();
        _optimizer.zero_grad();
        int pending = 0;
        long batchesDone = 0;
        // Each epoch shuffles with its own seed, with or without checkpoints: a resumed epoch then sees the same batches,
        // and turning checkpoints on does not change the model.
        var epochRng = new Random(TrainingCheckpoints.EpochSeed(_s.Seed, _epoch));
        TrainingProfile? profile = null;
        long waitStart = Stopwatch.GetTimestamp();
        foreach (var hostBatch in ModelTrainer.HostBatches(_trainRows(), _spec, _s, epochRng, pin: _cuda && BatchTransfer.UsePinnedMemory, _dist?.Collectives))
        {
            profile = TrainingProfile.Current; // read per batch: a profile may start mid-epoch (after warm-up steps)
            profile?.AddWait(Stopwatch.GetTimestamp() - waitStart);
            if (batchesDone < _skipBatches) { batchesDone++; hostBatch.Dispose(); waitStart = Stopwatch.GetTimestamp(); continue; } // consumed before the checkpoint we resumed from
            CheckCancel();
            TrainBatch(hostBatch, ref pending, profile);
            batchesDone++;
            pending++;
            waitStart = Stopwatch.GetTimestamp();
            if (pending < _s.GradientAccumulationSteps) continue;
            OptimizerStep(profile);
            pending = 0;
            if (_checkpoints is not null && _s.CheckpointEverySteps > 0 && _step % _s.CheckpointEverySteps == 0)
                _checkpoints.Save(new CheckpointState(_epoch, false, batchesDone, _step, _tokensSeen, _best, _bestEpoch, _badEpochs), _model, _optimizer, _bestWeights);
            if (_s.LogEverySteps > 0 && _step % _s.LogEverySteps == 0)
            {
                _lastLoss = TakeLoss();
                Report(null);
            }
            if (_s.MaxSteps > 0 && _step >= _s.MaxSteps) break;
            waitStart = Stopwatch.GetTimestamp();
        }
        if (pending > 0) { CheckCancel(); OptimizerStep(profile); }
        _skipBatches = 0;
        if (_lossCount > 0) _lastLoss = TakeLoss();
    }

    /// <summary>Forward and backward of one batch (split in pieces after an out-of-memory error); its loss stays on the device.</summary>
    private void TrainBatch(ModelBatch hostBatch, ref int pending, TrainingProfile? profile)
    {
        using var scope = NewDisposeScope();
        using var batch = BatchTransfer.ToDevice(hostBatch, _device, nonBlocking: _cuda && BatchTransfer.UsePinnedMemory);
        if (!ReferenceEquals(batch, hostBatch)) hostBatch.Dispose();
        Tensor? batchLoss = null; // this batch's loss (weighted over pieces after an out-of-memory split)
        int dropped = pending;
        _oom.Run(batch, (piece, weight) =>
        {
            _s.FaultInjection?.Invoke(piece);
            long start = Stopwatch.GetTimestamp();
            var loss = ModelTrainer.Loss(_runner, piece, _spec.Labels, _s.LabelSmoothing);
            long forwardEnd = Stopwatch.GetTimestamp();
            profile?.AddForward(forwardEnd - start);
            (loss * (weight / _s.GradientAccumulationSteps)).backward();
            _runner.ThrowIfCheckpointFailed();
            if (_mp is { GradientsStayInCopy: false }) _mp.MoveGradients();
            profile?.AddBackward(Stopwatch.GetTimestamp() - forwardEnd);
            var detached = loss.detach().to(ScalarType.Float64) * weight;
            batchLoss = (batchLoss is null ? detached : batchLoss + detached).MoveToOuterDisposeScope(); // out of the piece's scope
        }, () =>
        {
            // The failed attempt's partial gradients (and those of earlier batches of this accumulation group) are dropped.
            _optimizer.zero_grad(); _runner.zero_grad();
            batchLoss = null; dropped = 0;
        });
        pending = dropped;
        if (_lossSum is null) _lossSum = batchLoss!.clone().DetachFromDisposeScope();
        else _lossSum.add_(batchLoss!);
        _lossCount++;
        _tokensSeen += batch.RealTokens;
    }

    private void OptimizerStep(TrainingProfile? profile)
    {
        long start = Stopwatch.GetTimestamp();
        ModelTrainer.OptimizerStep(_optimizer, _parameters, _s, ref _step, _totalSteps, _warmup, _dist, _mp);
        profile?.AddOptimizer(Stopwatch.GetTimestamp() - start);
    }

    private void Report(double? metric, bool endOfEpoch = false, ValidationScore? score = null)
        => ModelTrainer.Report(_log, _s, new ModelTrainer.ProgressPoint(_epoch, _step, _totalSteps, _lastLoss, _tokensSeen, _resumed ? _resumedStep : null, _resumedTokens,
                _tokenClock.Elapsed, _sw.Elapsed, metric, score?.LogLoss, _s.CalibrateTemperature ? score?.CalibratedLogLoss : null), _optimizer, endOfEpoch, _classification ? "validation accuracy" : "validation RMSE");

    private double TakeLoss()
    {
        double mean = _lossSum is null || _lossCount == 0 ? double.NaN : _lossSum.item<double>() / _lossCount;
        _lossSum?.Dispose(); _lossSum = null; _lossCount = 0;
        return mean;
    }

    /// <summary>Smallest drop of the validation log-loss that counts as an improvement: float noise (or a vanishing
    /// learning rate) must not keep a run going.</summary>
    private const double MinLogLossImprovement = 1e-4;

    /// <summary>The epoch's validation score (null without validation rows); keeps a copy of the best weights on the CPU.</summary>
    private ValidationScore? Validate()
    {
        if (_validationRows is null) return null;
        CheckCancel();
        var score = ValidationScoring.Score(_model, _spec, _validationRows(), _s.BatchSize, _s.MaxBatchTokens, _device, CheckCancel);
        if (score.Rows == 0) throw new InvalidOperationException("The validation data has no row with a label; give validation rows with labels, or set ValidationFraction = 0 and no ValidationSet to train without validation.");
        // Classification: the log-loss after the epoch's best temperature when the probabilities will be calibrated (it
        // follows accuracy, where the raw log-loss already rises once the network grows confident), else the raw log-loss.
        double criterion = (_s.CalibrateTemperature ? score.CalibratedLogLoss : score.LogLoss) ?? score.Metric; // lower is better
        bool improved = _best is null || (score.LogLoss is not null ? criterion < _best - MinLogLossImprovement : criterion < _best);
        if (improved)
        {
            _best = criterion; _bestEpoch = _epoch; _badEpochs = 0;
            (_bestMetric, _bestLogLoss) = (score.Metric, score.LogLoss);
            ModelTrainer.DisposeAll(_bestWeights);
            _bestWeights = ModelTrainer.Snapshot(_model);
        }
        else _badEpochs++;
        return score;
    }

    /// <summary>With <see cref="TrainingSettings.ScoreStartingWeights"/>: the weights before any step become the best
    /// so far ("epoch 0"), so that training keeps them unless an epoch validates better.</summary>
    private void ScoreStartingWeights()
    {
        if (!_s.ScoreStartingWeights || _resumed || _validationRows is null) return;
        _epoch = 0;
        var score = Validate()!;
        _log.Info($"Starting weights (epoch 0): {CriterionName} {_best:G4}" +
                  (_classification ? $", accuracy {score.Metric:G4}" : "") + "; an epoch replaces them only if it validates better.");
    }

    private (double T, double After)? _temperature;

    /// <summary>Calibrates the restored model's probabilities on the validation rows (classification only).</summary>
    private void FitTemperature()
    {
        if (_validationRows is null || !_classification || !_s.CalibrateTemperature) return;
        CheckCancel();
        var fit = ValidationScoring.FitTemperature(_model, _spec, _validationRows(), _s.BatchSize, _s.MaxBatchTokens, _device, CheckCancel);
        if (fit.Rows == 0) return;
        _temperature = (fit.Temperature, fit.LogLossAfter);
        _log.Info($"Temperature scaling on {fit.Rows:N0} validation rows: T = {fit.Temperature:F3}, validation log-loss {fit.LogLossBefore:F4} → {fit.LogLossAfter:F4} " +
                  "(probabilities are softmax(logits / T); predictions are unchanged).");
    }

    private bool ShouldStopEarly()
    {
        if (_validationRows is null || _s.EarlyStoppingPatience <= 0 || _badEpochs < _s.EarlyStoppingPatience) return false;
        if (_epoch >= _s.MaxEpochs) return false; // the run ends here anyway: nothing was stopped
        _log.Info($"Early stopping after epoch {_epoch}: no validation improvement for {_badEpochs} epoch(s); best {CriterionName} {_best:G4} at epoch {_bestEpoch}.");
        _stoppedEarly = true;
        return true;
    }

    private void RestoreBestWeights()
    {
        if (_bestWeights is null) return;
        using (torch.no_grad()) _model.load_state_dict(_bestWeights, strict: true);
        _mp?.SyncWeights();
        _log.Info($"Restored the weights of epoch {_bestEpoch} (best {CriterionName} {_best:G4}" +
                  (_classification && _bestMetric is { } acc ? $", accuracy {acc:G4})." : ")."));
    }

    private string CriterionName => !_classification ? "validation RMSE" : _s.CalibrateTemperature ? "calibrated validation log-loss" : "validation log-loss";

    public void Dispose()
    {
        _optimizer?.Dispose();
        _mp?.Dispose();
    }
}

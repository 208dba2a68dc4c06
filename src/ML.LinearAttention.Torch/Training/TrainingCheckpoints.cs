using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Where a checkpointed run stands: enough to resume it at the next batch.</summary>
/// <param name="Epoch">1-based epoch the checkpoint was taken in.</param>
/// <param name="EpochComplete">True when taken after the epoch's validation (resume starts the next epoch).</param>
/// <param name="BatchesDoneInEpoch">Training batches of <paramref name="Epoch"/> already consumed (resume skips them).</param>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TokensSeen">Real tokens trained on so far.</param>
/// <param name="Best">Best validation metric so far, if any.</param>
/// <param name="BestEpoch">Epoch of <paramref name="Best"/>.</param>
/// <param name="BadEpochs">Epochs without validation improvement (early stopping).</param>
internal sealed record CheckpointState(int Epoch, bool EpochComplete, long BatchesDoneInEpoch, long Step, long TokensSeen, double? Best, int? BestEpoch, int BadEpochs);

/// <summary>
/// Training checkpoints in one directory: model weights, AdamW moments, the libtorch RNG, the position in the epoch,
/// the early-stopping state and the best weights so far. Each checkpoint is written to a temporary file, flushed to
/// disk and renamed into place, so a crash (even kill -9) leaves either the previous checkpoint or the new one, never a
/// partial file. The newest two are kept; an unreadable newest one falls back to the one before. A checkpoint records
/// a fingerprint of the model configuration, the training settings and the data size, so a run never resumes from
/// another run's state.
/// </summary>
internal sealed class TrainingCheckpoints
{
    private const string Magic = "LACKPT01";
    private const string EndMarker = "LACKPT-END";
    private const string Extension = ".lacheckpoint";
    private const string Prefix = "checkpoint-";
    private readonly string _directory;
    private readonly string _fingerprint;
    private readonly ITrainingLog _log;

    public TrainingCheckpoints(string directory, string fingerprint, ITrainingLog log)
    {
        if (string.IsNullOrWhiteSpace(directory)) throw new ArgumentException("CheckpointDirectory is empty; give a directory path, or null for no checkpoints.", nameof(directory));
        _directory = Path.GetFullPath(directory);
        _fingerprint = fingerprint;
        _log = log;
        Directory.CreateDirectory(_directory);
        // A crash during a write can leave a temporary file; it never became a checkpoint.
        foreach (var temp in Directory.EnumerateFiles(_directory, Prefix + "*.tmp-*")) TryDelete(temp);
    }

    /// <summary>The fingerprint of a run: what must not change between a checkpoint and its resume.</summary>
    public static string Fingerprint(TrainableModel model, TrainingSettings s, long trainRows)
    {
        var text = $"{model.ConfigurationJson}|rows={trainRows}|batch={s.BatchSize}|tokens={s.MaxBatchTokens}|epochs={s.MaxEpochs}|steps={s.MaxSteps}|lr={s.LearningRate:R}|" +
                   $"wd={s.WeightDecay:R}|warmup={s.WarmupRatio:R}|decay={s.Decay}|final={s.FinalLearningRateRatio:R}|clip={s.MaxGradientNorm:R}|" +
                   $"accum={s.GradientAccumulationSteps}|buffer={s.ShuffleBufferRows}|seed={s.Seed}|precision={s.Precision}|" +
                   $"smoothing={s.LabelSmoothing:R}|best=logloss";
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>Checkpoint files, newest first (by step; at the same step, the end of an epoch is written after the step's).</summary>
    public IReadOnlyList<string> Files()
        => Directory.EnumerateFiles(_directory, Prefix + "*" + Extension)
            .OrderByDescending(f => Path.GetFileName(f).AsSpan(Prefix.Length, 10).ToString(), StringComparer.Ordinal)
            .ThenByDescending(f => f.EndsWith("-e" + Extension, StringComparison.Ordinal))
            .ToList();

    /// <summary>Seed of the shuffling of one epoch, so a resumed epoch sees the same batches as the original run.</summary>
    public static int EpochSeed(int seed, int epoch) => unchecked(seed * 1_000_003 + epoch * 7_919);

    /// <summary>Writes a checkpoint atomically and removes all but the newest two.</summary>
    public void Save(CheckpointState state, TrainableModel model, AdamW optimizer, Dictionary<string, Tensor>? bestWeights)
    {
        var final = Path.Combine(_directory, $"{Prefix}{state.Step:D10}-{(state.EpochComplete ? "e" : "s")}{Extension}");
        var temp = final + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
                {
                    w.Write(Magic);
                    w.Write(_fingerprint);
                    w.Write(state.Epoch); w.Write(state.EpochComplete); w.Write(state.BatchesDoneInEpoch);
                    w.Write(state.Step); w.Write(state.TokensSeen);
                    w.Write(state.Best.HasValue); w.Write(state.Best ?? 0); w.Write(state.BestEpoch ?? 0); w.Write(state.BadEpochs);
                    using (var rng = torch.random.get_rng_state()) rng.Save(w);
                    model.save(w);
                    optimizer.save_state_dict(w);
                    w.Write(bestWeights is not null);
                    if (bestWeights is not null)
                    {
                        w.Write(bestWeights.Count);
                        foreach (var (name, t) in bestWeights) { w.Write(name); t.Save(w); }
                    }
                    w.Write(EndMarker);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, final, overwrite: true);
        }
        finally
        {
            TryDelete(temp);
        }
        foreach (var old in Files().Skip(2)) TryDelete(old);
        _log.Info($"Checkpoint written at step {state.Step} (epoch {state.Epoch}{(state.EpochComplete ? ", end" : "")}): {final}");
    }

    /// <summary>
    /// Restores the newest readable checkpoint into <paramref name="model"/> and <paramref name="optimizer"/>; null when
    /// the directory holds none. A checkpoint of another run (different fingerprint) is an error, never silently used.
    /// </summary>
    public CheckpointState? TryResume(TrainableModel model, AdamW optimizer, out Dictionary<string, Tensor>? bestWeights)
    {
        bestWeights = null;
        foreach (var file in Files())
        {
            try
            {
                var state = Read(file, model, optimizer, out bestWeights);
                _log.Info($"Resuming from step {state.Step} (epoch {state.Epoch}{(state.EpochComplete ? " complete" : $", {state.BatchesDoneInEpoch} batch(es) done")}, " +
                          $"{state.TokensSeen:N0} tokens trained before) of checkpoint {file}.");
                return state;
            }
            catch (CheckpointMismatchException)
            {
                throw;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or EndOfStreamException or FormatException or ArgumentException or System.Runtime.InteropServices.ExternalException)
            {
                _log.Warning($"Checkpoint {file} cannot be read ({e.Message}); trying an older one.");
            }
        }
        return null;
    }

    private CheckpointState Read(string file, TrainableModel model, AdamW optimizer, out Dictionary<string, Tensor>? bestWeights)
    {
        bestWeights = null;
        using var stream = File.OpenRead(file);
        // Renamed into place only once complete, so a file without its end marker is damaged: check before touching anything.
        var end = Encoding.UTF8.GetBytes(EndMarker);
        if (stream.Length < end.Length + 16) throw new InvalidDataException("the file is too short");
        stream.Seek(-end.Length, SeekOrigin.End);
        var tail = new byte[end.Length];
        stream.ReadExactly(tail);
        if (!tail.AsSpan().SequenceEqual(end)) throw new InvalidDataException("the checkpoint is incomplete");
        stream.Seek(0, SeekOrigin.Begin);

        using var r = new BinaryReader(stream, Encoding.UTF8);
        if (r.ReadString() != Magic) throw new InvalidDataException("not an ML.LinearAttention checkpoint");
        if (r.ReadString() != _fingerprint)
            throw new CheckpointMismatchException($"The checkpoint '{file}' belongs to another training run (different model configuration, training " +
                                                  "settings or number of training rows). Delete the checkpoint directory to start afresh, or point " +
                                                  "CheckpointDirectory at a new directory.");
        int epoch = r.ReadInt32(); bool complete = r.ReadBoolean(); long batches = r.ReadInt64();
        long step = r.ReadInt64(); long tokens = r.ReadInt64();
        bool hasBest = r.ReadBoolean(); double best = r.ReadDouble(); int bestEpoch = r.ReadInt32(); int bad = r.ReadInt32();
        using var rng = torch.random.get_rng_state();
        rng.Load(r);
        model.load(r, strict: true);
        optimizer.load_state_dict(r);
        if (r.ReadBoolean())
        {
            bestWeights = Clone(model);
            int n = r.ReadInt32();
            for (int i = 0; i < n; i++)
            {
                var name = r.ReadString();
                if (!bestWeights.TryGetValue(name, out var t)) throw new InvalidDataException($"unknown tensor '{name}' in the best weights");
                t.Load(r);
            }
        }
        torch.random.set_rng_state(rng);
        return new CheckpointState(epoch, complete, batches, step, tokens, hasBest ? best : null, hasBest ? bestEpoch : null, bad);
    }

    /// <summary>Removes every checkpoint (after a run completes).</summary>
    public void DeleteAll()
    {
        foreach (var f in Files()) TryDelete(f);
    }

    private static Dictionary<string, Tensor> Clone(TrainableModel model)
    {
        using var _ = torch.no_grad();
        return model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
    }

    private static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>A checkpoint exists but belongs to another run.</summary>
public sealed class CheckpointMismatchException(string message) : InvalidOperationException(message);

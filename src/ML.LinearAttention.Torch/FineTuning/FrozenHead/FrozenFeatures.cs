using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>
/// What a frozen encoder makes of a set of rows, computed once: per row the pooled vector, the final token states of
/// its real tokens (only when the head reads them), and the label. Kept on the CPU in fp32; batches are padded again
/// on demand, so a row's features never depend on the rows it was encoded with.
/// </summary>
public sealed class FrozenFeatures : IDisposable
{
    private readonly List<Tensor> _states = new();
    private readonly List<Tensor> _pooled = new();
    private readonly List<float> _labels = new();
    private readonly List<int> _lengths = new();
    private Tensor? _pooledAll; // [N, C], stacked on first use: one gather per batch instead of N small tensors

    private FrozenFeatures(bool withStates) => WithStates = withStates;

    /// <summary>True when the token states are kept (heads that read them, such as Moment Probing's).</summary>
    public bool WithStates { get; }

    /// <summary>Rows.</summary>
    public int Count => _labels.Count;

    /// <summary>Real tokens over all rows.</summary>
    public long Tokens { get; private set; }

    /// <summary>Bytes the cached tensors take.</summary>
    public long Bytes { get; private set; }

    /// <summary>
    /// Runs <paramref name="model"/>'s encoder (eval mode, no gradients) over <paramref name="rows"/>. Returns null,
    /// having freed what it held, as soon as the features would exceed <paramref name="maxBytes"/>.
    /// </summary>
    public static FrozenFeatures? Compute(SequenceModel model, IEnumerable<Example> rows, CollateSpec spec, int batchSize, long maxBatchTokens,
        Device device, bool withStates, long maxBytes, Action checkCancel)
    {
        var features = new FrozenFeatures(withStates);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            foreach (var batchRows in Batching.Bucketed(rows, batchSize, maxBatchTokens, batchSize * 16, null))
            {
                checkCancel();
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(batchRows, device, spec.PadId, spec.NumericFeatures, spec.SideLength, spec.SideFill, spec.Labels);
                var (states, mask) = model.EncodeTokens(batch);
                var pooled = model.Pool(states, mask).to(ScalarType.Float32).cpu();
                var lengths = mask.sum(1).cpu();
                var statesCpu = withStates ? states.to(ScalarType.Float32).cpu() : null;
                for (int r = 0; r < batchRows.Count; r++)
                {
                    int length = (int)lengths[r].item<long>();
                    // Real tokens are a prefix (right padding), so the trimmed rows pad back to the same batches.
                    features.Add(pooled[r].clone().DetachFromDisposeScope(),
                        statesCpu is null ? null : statesCpu[r].narrow(0, 0, length).clone().DetachFromDisposeScope(), batchRows[r].Label, length);
                }
                if (features.Bytes > maxBytes)
                {
                    features.Dispose();
                    return null;
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return features;
    }

    private void Add(Tensor pooled, Tensor? states, float label, int length)
    {
        _pooled.Add(pooled);
        if (states is not null) _states.Add(states);
        _labels.Add(label);
        _lengths.Add(length);
        Tokens += length;
        Bytes += (pooled.numel() + (states?.numel() ?? 0)) * sizeof(float);
    }

    /// <summary>Length of row <paramref name="index"/> in tokens (for bucketing).</summary>
    public int LengthOf(int index) => _lengths[index];

    /// <summary>
    /// The rows <paramref name="indices"/> as head inputs on <paramref name="device"/>: states [B, T, C] padded with
    /// zeros (an empty [B, 1, C] when not kept), mask [B, T], pooled [B, C], labels [B] (int64 class indices or
    /// float32 targets). Tensors belong to the caller's dispose scope.
    /// </summary>
    public (Tensor States, Tensor Mask, Tensor Pooled, Tensor Labels) Batch(IReadOnlyList<int> indices, LabelKind labels, Device device)
    {
        _pooledAll ??= stack(_pooled).DetachFromDisposeScope();
        var pooled = _pooledAll.index_select(0, tensor(indices.Select(i => (long)i).ToArray())).to(device);
        Tensor states, mask;
        if (WithStates)
        {
            long t = indices.Max(i => _lengths[i]);
            states = zeros(indices.Count, t, _pooled[0].shape[0]);
            for (int r = 0; r < indices.Count; r++) states[r].narrow(0, 0, _lengths[indices[r]]).copy_(_states[indices[r]]);
            states = states.to(device);
            var lengths = tensor(indices.Select(i => (long)_lengths[i]).ToArray(), device: device);
            mask = arange(t, device: device).unsqueeze(0).lt(lengths.unsqueeze(1));
        }
        else
        {
            states = zeros(indices.Count, 1, _pooled[0].shape[0], device: device);
            mask = ones(indices.Count, 1, dtype: ScalarType.Bool, device: device);
        }
        var y = labels == LabelKind.Key
            ? tensor(indices.Select(i => (long)_labels[i]).ToArray(), device: device)
            : tensor(indices.Select(i => _labels[i]).ToArray(), device: device);
        return (states, mask, pooled, y);
    }

    public void Dispose()
    {
        foreach (var t in _states) t.Dispose();
        foreach (var t in _pooled) t.Dispose();
        _pooledAll?.Dispose();
        _states.Clear(); _pooled.Clear();
    }
}

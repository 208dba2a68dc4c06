using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Estimators;

public abstract partial class LinearAttentionTransformer
{
    private InferencePrecision _precision = InferencePrecision.Auto;
    private readonly Dictionary<ScalarType, TrainableModel> _scoringCopies = new();
    private readonly object _scoringCopiesGate = new();

    /// <summary>
    /// Numeric precision of scoring (Transform, PredictionEngine and the hosting pool): Auto (the default) scores with a
    /// bf16 copy of the weights on CUDA and with the fp32 weights on the CPU. A scoring-time setting, not saved with the
    /// model (saved weights stay fp32): set it after <c>mlContext.Model.Load</c>, or through the estimator's
    /// <c>InferencePrecision</c> option. Float16 on the CPU is refused when set. The low-precision copy is made on first
    /// use and kept until the transformer is disposed; engines already scoring finish with the copy they started with.
    /// </summary>
    public InferencePrecision Precision
    {
        get => _precision;
        set
        {
            ScoringPrecision.Resolve(value, Device); // fails now, with the reason, rather than on the first row
            _precision = value;
        }
    }

    /// <summary>The precision scoring really uses on this transformer's device (Auto resolved): Float32, BFloat16 or Float16.</summary>
    public InferencePrecision EffectivePrecision => ScoringPrecision.Resolve(_precision, Device) switch
    {
        ScalarType.BFloat16 => InferencePrecision.BFloat16,
        ScalarType.Float16 => InferencePrecision.Float16,
        _ => InferencePrecision.Float32,
    };

    /// <summary>The module that scores at the current <see cref="Precision"/>: the fp32 model itself, or its low-precision copy.</summary>
    internal TrainableModel ScoringModel
    {
        get
        {
            var dtype = ScoringPrecision.Resolve(_precision, Device);
            if (dtype == ScalarType.Float32) return Model;
            lock (_scoringCopiesGate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (!_scoringCopies.TryGetValue(dtype, out var copy))
                {
                    copy = ScoringPrecision.LowPrecisionCopy(Model, Device, dtype);
                    copy.eval();
                    _scoringCopies[dtype] = copy;
                }
                return copy;
            }
        }
    }

    /// <summary>Drops the low-precision copies (after the fp32 weights changed, or on dispose).</summary>
    private void ReleaseScoringCopies()
    {
        lock (_scoringCopiesGate)
        {
            foreach (var copy in _scoringCopies.Values) copy.Dispose();
            _scoringCopies.Clear();
        }
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Numeric precision of scoring (Transform, PredictionEngine, the hosting pool). Saved models keep fp32 weights;
/// this only chooses the copy that scores.</summary>
public enum InferencePrecision
{
    /// <summary>bf16 on CUDA, fp32 on the CPU (bf16 is fast there only on processors with bf16 instructions: a choice to measure).</summary>
    Auto,
    /// <summary>fp32 weights and activations (the fp32 master model itself scores).</summary>
    Float32,
    /// <summary>A bf16 copy of the weights scores (fp32 range, 8 bits of mantissa).</summary>
    BFloat16,
    /// <summary>An fp16 copy of the weights scores (CUDA only).</summary>
    Float16,
}

/// <summary>
/// Resolves an <see cref="InferencePrecision"/> for a device and builds the low-precision scoring copy of a model: the
/// same sibling-and-copy as training's <see cref="MixedPrecision"/>, without gradients.
/// </summary>
public static class ScoringPrecision
{
    /// <summary>The element type that scores on <paramref name="device"/>; throws for fp16 on the CPU.</summary>
    public static ScalarType Resolve(InferencePrecision precision, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Resolve(precision, device.type);
    }

    /// <summary>The element type that scores on a device of type <paramref name="deviceType"/> (no device is initialised).</summary>
    public static ScalarType Resolve(InferencePrecision precision, DeviceType deviceType)
    {
        bool cuda = deviceType == DeviceType.CUDA;
        return precision switch
        {
            InferencePrecision.Auto => cuda ? ScalarType.BFloat16 : ScalarType.Float32,
            InferencePrecision.Float32 => ScalarType.Float32,
            InferencePrecision.BFloat16 => ScalarType.BFloat16,
            InferencePrecision.Float16 when cuda => ScalarType.Float16,
            InferencePrecision.Float16 => throw new NotSupportedException(
                "InferencePrecision.Float16 needs a CUDA device: libtorch's CPU build has no fast fp16 kernels (its fp16 matmuls and " +
                "attention run far slower than fp32). On the CPU use Float32 (Auto) or BFloat16."),
            _ => throw new ArgumentOutOfRangeException(nameof(precision), precision,
                "Unknown InferencePrecision: use Auto, Float32, BFloat16 or Float16."),
        };
    }

    /// <summary>Parses fp32/float32, bf16/bfloat16, fp16/float16 or auto (the CLI and bench spelling), case-insensitively.</summary>
    public static InferencePrecision Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Trim().ToLowerInvariant() switch
        {
            "auto" => InferencePrecision.Auto,
            "fp32" or "float32" => InferencePrecision.Float32,
            "bf16" or "bfloat16" => InferencePrecision.BFloat16,
            "fp16" or "float16" or "half" => InferencePrecision.Float16,
            _ => throw new ArgumentException($"'{text}' is not a precision: use auto, fp32, bf16 or fp16."),
        };
    }

    /// <summary>Short name (auto, fp32, bf16, fp16) of a precision, as <see cref="Parse"/> reads it.</summary>
    public static string Name(InferencePrecision precision) => precision switch
    {
        InferencePrecision.Float32 => "fp32",
        InferencePrecision.BFloat16 => "bf16",
        InferencePrecision.Float16 => "fp16",
        _ => "auto",
    };

    /// <summary>Short name (fp32, bf16, fp16) of a scoring element type.</summary>
    public static string Name(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "fp32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        _ => dtype.ToString(),
    };

    /// <summary>
    /// A copy of <paramref name="master"/> (same structure, its current weights and buffers) on <paramref name="device"/>
    /// in <paramref name="dtype"/> (in the module's default training mode: callers set eval() or train()). The global random generator is left where it was (building the
    /// copy draws initial weights that are then overwritten).
    /// </summary>
    public static TrainableModel LowPrecisionCopy(TrainableModel master, Device device, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(master);
        TrainableModel copy;
        using (var state = random.get_rng_state())
        {
            copy = master.CreateSibling();
            random.set_rng_state(state);
        }
        try
        {
            using (no_grad()) copy.load_state_dict(master.state_dict());
            copy.to(device);
            copy.to(dtype);
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }
}

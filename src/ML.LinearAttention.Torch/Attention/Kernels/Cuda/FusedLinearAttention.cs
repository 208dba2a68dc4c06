using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>Feature map applied inside the fused kernels.</summary>
public enum FusedFeatureMap
{
    /// <summary>q and k are used as given (already mapped by the caller, e.g. Hedgehog; must be non-negative).</summary>
    Identity = 0,
    /// <summary>relu(x).</summary>
    Relu = 1,
    /// <summary>elu(x) + 1.</summary>
    Elu = 2,
}

/// <summary>
/// Bidirectional normalized linear attention as fused CUDA kernels (compiled at run time with NVRTC, launched through
/// the CUDA driver API): two kernels forward (per-head state, then outputs) and two backward, instead of a dozen
/// TorchSharp passes. Same result as <see cref="LinearAttentionKernels.Bidirectional"/> on φ(q), φ(k) with
/// normalize = true. On the CPU, when NVRTC or the driver cannot be loaded (said once on stderr), for other dtypes than
/// fp32/bf16/fp16, or head dims above 128, it falls back to that TorchSharp path.
/// <para>Shapes: q, k [B, H, T, D] raw (before the feature map), v [B, H, T, Dv], keyPaddingMask [B, T] bool (true =
/// real token) or null; result [B, H, T, Dv] in q's dtype, zero at padded positions. Accumulation is fp32.</para>
/// </summary>
public static partial class FusedLinearAttention
{
    /// <summary>Environment variable that turns the fused path off process-wide when set to "0" (<see cref="FusedKernelOptions.Enabled"/>'s default).</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED";

    /// <summary>Largest head dimension (D and Dv) the fused kernels take; larger ones use the TorchSharp path.</summary>
    public const int MaxHeadDim = 128;

    /// <summary>Environment variable that turns the tensor-core kernels off process-wide when set to "0" (<see cref="FusedKernelOptions.UseTensorCores"/>'s default).</summary>
    public const string TensorCoreVariable = "ML_LINEARATTENTION_FUSED_MMA";

    private static int _reported;

    /// <summary>True when the fused kernels can run on <paramref name="device"/> (CUDA, with the driver and NVRTC loadable).</summary>
    public static bool IsAvailable(Device device) => UnavailableReason(device) is null;

    /// <summary>Why the fused kernels cannot run on <paramref name="device"/>, or null when they can.</summary>
    public static string? UnavailableReason(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.type != DeviceType.CUDA) return $"the fused kernels run on CUDA devices only (got {device}).";
        return CudaLibraries.EnsureLoaded();
    }

    /// <summary>Parses "relu", "elu" (elu+1) or "identity" (φ already applied by the caller).</summary>
    public static FusedFeatureMap ParseFeatureMap(string name) => name?.ToLowerInvariant() switch
    {
        "relu" => FusedFeatureMap.Relu,
        "elu" => FusedFeatureMap.Elu,
        "identity" => FusedFeatureMap.Identity,
        _ => throw new ArgumentException($"The fused kernels take the feature maps relu, elu or identity (precomputed); got '{name}'.", nameof(name)),
    };

    /// <summary>
    /// Shortest sequence the mixers route to the CUDA-core kernels (inputs the tensor-core kernels take go at any length).
    /// In the kernel benchmark (docs/benchmarks/kernels.md) the tensor-core kernels beat the TorchSharp ops at every
    /// length from 512 to 32K; the CUDA-core ones only from about 8K on. Direct calls of <see cref="Bidirectional(Tensor, Tensor, Tensor, Tensor?, FusedFeatureMap, double)"/> ignore it.
    /// </summary>
    public static int MinimumLength { get; set; } = 4096;

    /// <summary>
    /// True when the tensor-core kernels would take these inputs: <see cref="FusedKernelOptions.UseTensorCores"/>, bf16 or fp16, D and Dv
    /// multiples of 16 up to 128 (the GPU must also be sm_80 or newer, which the launch checks).
    /// </summary>
    public static bool TensorCoresApply(Tensor q, Tensor v)
        => FusedKernelOptions.Current.UseTensorCores && q.dtype is ScalarType.BFloat16 or ScalarType.Float16
           && q.shape[^1] % 16 == 0 && v.shape[^1] % 16 == 0 && q.shape[^1] <= MaxHeadDim && v.shape[^1] <= MaxHeadDim;

    /// <summary>
    /// True when mixers should route a call with these inputs here: on CUDA and enabled, and either the tensor cores
    /// apply or T ≥ <see cref="MinimumLength"/> (the call itself still falls back if needed).
    /// </summary>
    public static bool ShouldUse(Tensor q, Tensor v)
        => FusedKernelOptions.Current.Enabled && q.device.type == DeviceType.CUDA && (TensorCoresApply(q, v) || q.shape[^2] >= MinimumLength);

    /// <summary>
    /// o_i = Σ_j a_ij v_j / (Σ_j a_ij + eps·n), a_ij = φ(q_i)·φ(k_j) over real keys j, n = real tokens of the row (at
    /// least 1); zero rows at padded positions. Differentiable in q, k and v (the backward pass is fused as well).
    /// </summary>
    /// <param name="q">Raw queries [B, H, T, D].</param>
    /// <param name="k">Raw keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="featureMap">φ, applied inside the kernel; <see cref="FusedFeatureMap.Identity"/> when the caller already applied it (it must be non-negative).</param>
    /// <param name="eps">Normalizer epsilon (per token, so eps·n in the sum form).</param>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps = LinearAttentionKernels.DefaultEps)
        => Bidirectional(q, k, v, keyPaddingMask, featureMap, eps, FusedKernelOptions.Current.UseTensorCores);

    /// <summary>As the public overload, with the tensor-core choice given (benchmarks time both fused variants).</summary>
    internal static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps, bool tensorCores)
    {
        Check(q, k, v, keyPaddingMask, featureMap, eps);
        var reason = FusedReason(q, k, v, keyPaddingMask);
        if (reason is null) return FusedBidirectionalFunction.Run(q, k, v, keyPaddingMask, featureMap, eps, tensorCores);
        if (q.device.type == DeviceType.CUDA && FusedKernelOptions.Current.Enabled && CudaLibraries.EnsureLoaded() is { } missing && Interlocked.Exchange(ref _reported, 1) == 0)
            Console.Error.WriteLine("ML.LinearAttention: fused linear attention kernels are unavailable, using the TorchSharp path: " + missing);
        return Reference(q, k, v, keyPaddingMask, featureMap, eps);
    }

    /// <summary>The TorchSharp path with the same semantics (the fallback, and the reference of the tests).</summary>
    public static Tensor Reference(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps = LinearAttentionKernels.DefaultEps)
    {
        Check(q, k, v, keyPaddingMask, featureMap, eps);
        using var scope = NewDisposeScope();
        return LinearAttentionKernels.Bidirectional(Map(featureMap, q), Map(featureMap, k), v, keyPaddingMask, normalize: true, eps).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin (explicit T×T weights, fp32) with the feature map applied: for tests.</summary>
    public static Tensor Naive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps = LinearAttentionKernels.DefaultEps)
    {
        Check(q, k, v, keyPaddingMask, featureMap, eps);
        using var scope = NewDisposeScope();
        return LinearAttentionKernels.BidirectionalNaive(Map(featureMap, q), Map(featureMap, k), v, keyPaddingMask, normalize: true, eps).MoveToOuterDisposeScope();
    }

    /// <summary>φ(x) for a fused feature map as TorchSharp ops (identity: x itself), as the fused kernels apply it.</summary>
    public static Tensor ApplyFeatureMap(FusedFeatureMap map, Tensor x) => Map(map, x);

    internal static Tensor Map(FusedFeatureMap map, Tensor x) => map switch
    {
        FusedFeatureMap.Relu => FeatureMaps.Apply("relu", x),
        FusedFeatureMap.Elu => FeatureMaps.Apply("elu", x),
        _ => x,
    };

    internal static void Check(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (q.shape[1] != k.shape[1] || q.shape[2] != k.shape[2] || q.shape[3] != k.shape[3])
            throw new ArgumentException($"q and k must have the same [B, H, T, D] shape for bidirectional attention; got q {Heads.Shape(q)}, k {Heads.Shape(k)}.");
        if (!Enum.IsDefined(featureMap))
            throw new ArgumentOutOfRangeException(nameof(featureMap), featureMap, "Unknown feature map; use Relu, Elu or Identity.");
        if (!(eps > 0) || double.IsInfinity(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be a positive finite number (it keeps the normalizer away from zero).");
        if (q.dtype != k.dtype || q.dtype != v.dtype)
            throw new ArgumentException($"q, k and v must share one dtype; got {q.dtype}, {k.dtype}, {v.dtype}.");
    }

    /// <summary>Null when the fused kernels take these inputs, else why not.</summary>
    internal static string? FusedReason(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        if (!FusedKernelOptions.Current.Enabled) return $"disabled ({EnableVariable}=0 or FusedKernelOptions.Current.Enabled = false).";
        if (UnavailableReason(q.device) is { } reason) return reason;
        if (!Same(k, q) || !Same(v, q) || (keyPaddingMask is not null && !Same(keyPaddingMask, q)))
            return "q, k, v and the mask are on different devices.";
        if (FusedLaunch.InType(q.dtype) < 0) return $"dtype {q.dtype} is not fp32, bf16 or fp16.";
        if (q.shape[3] > MaxHeadDim || v.shape[3] > MaxHeadDim) return $"head dims above {MaxHeadDim}.";
        if (q.shape[2] == 0 || q.shape[0] * q.shape[1] == 0) return "empty input.";
        if (q.shape[0] * q.shape[1] > 65535) return "more than 65535 (batch × heads).";
        return null;
    }

    private static bool Same(Tensor a, Tensor b) => a.device_type == b.device_type && a.device_index == b.device_index;
}

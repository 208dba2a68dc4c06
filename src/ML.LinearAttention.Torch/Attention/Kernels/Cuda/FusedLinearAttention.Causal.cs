using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

public static partial class FusedLinearAttention
{
    /// <summary>Environment variable that turns the mixers' routing to the fused CAUSAL kernels off when set to "0" (<see cref="FusedKernelOptions.CausalEnabled"/>'s default).</summary>
    public const string CausalEnableVariable = "ML_LINEARATTENTION_FUSED_CAUSAL";

    /// <summary>
    /// True when mixers should route a causal call with these inputs to <see cref="Causal"/>: <see cref="FusedKernelOptions.CausalEnabled"/>,
    /// <see cref="FusedKernelOptions.Enabled"/>, on CUDA, and the tensor-core kernels apply (the call itself still falls back if needed).
    /// </summary>
    public static bool ShouldUseCausal(Tensor q, Tensor v)
        => FusedKernelOptions.Current is { CausalEnabled: true, Enabled: true } && q.device.type == DeviceType.CUDA && TensorCoresApply(q, v);

    /// <summary>
    /// Causal normalized linear attention, o_t = Σ_{s≤t} a_ts v_s / (Σ_{s≤t} a_ts + eps·(t+1)), a_ts = φ(q_t)·φ(k_s)
    /// over real keys s, zero rows at padded positions, any T; as fused tensor-core CUDA kernels (chunk 64, fp32 prefix
    /// states, three kernels forward and three backward) for bf16/fp16 inputs with D and Dv multiples of 16 up to 128
    /// on sm_80 or newer (when the device's shared memory holds the backward kernel's tiles). Otherwise (CPU, fp32,
    /// other head dims, NVRTC missing, <see cref="FusedKernelOptions.Enabled"/> or <see cref="FusedKernelOptions.UseTensorCores"/> off) it runs
    /// <see cref="LinearAttentionKernels.Causal"/> on φ(q), φ(k): same semantics. Differentiable in q, k and v.
    /// </summary>
    /// <param name="q">Raw queries [B, H, T, D].</param>
    /// <param name="k">Raw keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token (right padding); null = all real.</param>
    /// <param name="featureMap">φ, applied inside the kernels; <see cref="FusedFeatureMap.Identity"/> when the caller already applied it (non-negative).</param>
    /// <param name="eps">Normalizer epsilon per position (eps·(t+1) in the sum form).</param>
    /// <returns>[B, H, T, Dv] in q's dtype.</returns>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps = LinearAttentionKernels.DefaultEps)
    {
        Check(q, k, v, keyPaddingMask, featureMap, eps);
        if (CausalReason(q, k, v, keyPaddingMask) is null) return FusedCausalFunction.Run(q, k, v, keyPaddingMask, featureMap, eps);
        using var scope = NewDisposeScope();
        return LinearAttentionKernels.Causal(Map(featureMap, q), Map(featureMap, k), v, keyPaddingMask, normalize: true, eps).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Causal"/> (explicit lower-triangular weights, fp32) with the feature map applied: for tests.</summary>
    public static Tensor CausalNaive(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, FusedFeatureMap featureMap, double eps = LinearAttentionKernels.DefaultEps)
    {
        Check(q, k, v, keyPaddingMask, featureMap, eps);
        using var scope = NewDisposeScope();
        return LinearAttentionKernels.CausalNaive(Map(featureMap, q), Map(featureMap, k), v, keyPaddingMask, normalize: true, eps).MoveToOuterDisposeScope();
    }

    /// <summary>Null when <see cref="Causal"/> runs these inputs on the fused kernels, else why it falls back.</summary>
    public static string? CausalReason(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask)
    {
        if (FusedReason(q, k, v, keyPaddingMask) is { } reason) return reason;
        if (!TensorCoresApply(q, v)) return "the causal fused kernels run on tensor cores only: bf16/fp16, D and Dv multiples of 16 up to 128, FusedKernelOptions.Current.UseTensorCores on.";
        return FusedCausalLaunch.DeviceReason(q.device_index < 0 ? 0 : q.device_index, (int)q.shape[3], (int)v.shape[3]);
    }
}

using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// Causal decayed linear attention with one log decay per head and token (simple GLA, RetNet, Lightning) as fused
/// tensor-core CUDA kernels: o_t = scale · Σ_{s≤t} exp(G_t − G_s) (q_t·k_s) v_s, G_t = Σ_{u≤t} g_u, over real keys s;
/// zero rows at padded positions, padded steps do not decay. Chunk 64, the intra-chunk decay mask formed in the
/// kernel, fp32 chunk states carried by a decayed scan; three kernels forward and three backward, differentiable in
/// q, k, v and g. Same semantics as <see cref="DecayKernels.Causal"/> with a [B, H, T] gate, which routes here on CUDA
/// (<see cref="ShouldUse"/>). Takes bf16/fp16 q, k, v with D and Dv multiples of 16 up to 128 on sm_80 or newer;
/// elsewhere <see cref="Causal"/> runs the TorchSharp chunk form.
/// </summary>
public static class FusedDecayAttention
{
    /// <summary>Environment variable that turns the routing of <see cref="DecayKernels"/> to these kernels off when set to "0" (<see cref="FusedKernelOptions.DecayEnabled"/>'s default).</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_DECAY";

    /// <summary>
    /// True when <see cref="DecayKernels"/> (and so the simple GLA, RetNet and Lightning mixers) should run a call with
    /// these inputs here: <see cref="FusedKernelOptions.DecayEnabled"/> and <see cref="FusedKernelOptions.Enabled"/>, on
    /// CUDA, and the tensor-core kernels apply (<see cref="Reason"/> has the device's last word).
    /// </summary>
    public static bool ShouldUse(Tensor q, Tensor v)
        => FusedKernelOptions.Current is { DecayEnabled: true, Enabled: true } && q.device.type == DeviceType.CUDA && FusedLinearAttention.TensorCoresApply(q, v);

    /// <summary>
    /// Causal decayed linear attention on the fused kernels when they take the inputs (<see cref="Reason"/> is null),
    /// else on <see cref="DecayKernels"/>' TorchSharp chunk form; the same result either way.
    /// </summary>
    /// <param name="q">Queries [B, H, T, D].</param>
    /// <param name="k">Keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="g">Log decays [B, H, T] (≤ 0; fp32 recommended), one per head and token.</param>
    /// <param name="keyPaddingMask">[B, T] bool, true = real token; null = all real.</param>
    /// <param name="scale">Query scale; null = 1/√D.</param>
    /// <returns>[B, H, T, Dv] in q's dtype.</returns>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale = null)
    {
        Check(q, k, v, g, keyPaddingMask, scale);
        return Reason(q, k, v, g, keyPaddingMask) is null
            ? FusedDecayFunction.Run(q, k, v, g, keyPaddingMask, scale ?? 1.0 / Math.Sqrt(q.shape[3]))
            : DecayKernels.CausalChunked(q, k, v, g, keyPaddingMask, scale, DecayKernels.DefaultChunk);
    }

    /// <summary>Null when <see cref="Causal"/> runs these inputs on the fused kernels, else why it falls back.</summary>
    public static string? Reason(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask)
    {
        if (FusedLinearAttention.FusedReason(q, k, v, keyPaddingMask) is { } reason) return reason;
        if (!FusedLinearAttention.TensorCoresApply(q, v))
            return "the fused decay kernels run on tensor cores only: bf16/fp16, D and Dv multiples of 16 up to 128, FusedKernelOptions.Current.UseTensorCores on.";
        if (q.dtype != k.dtype || q.dtype != v.dtype) return $"q, k and v have different dtypes ({q.dtype}, {k.dtype}, {v.dtype}).";
        if (!k.shape.SequenceEqual(q.shape)) return $"k {Heads.Shape(k)} is not shaped as q {Heads.Shape(q)}.";
        if (g.dim() != 3) return $"the fused decay kernels take one log decay per head and token, [B, H, T]; got {Heads.Shape(g)}.";
        if (g.device_type != q.device_type || g.device_index != q.device_index) return "g is on another device than q.";
        return FusedDecayLaunch.DeviceReason(q.device_index < 0 ? 0 : q.device_index, (int)q.shape[3], (int)v.shape[3]);
    }

    /// <summary>
    /// Runs <paramref name="call"/> with <see cref="FusedKernelOptions.DecayEnabled"/> off, so that <see cref="DecayKernels"/>
    /// takes its TorchSharp chunk form (the benchmarks time both; the routing is decided in the forward call).
    /// </summary>
    internal static Tensor Unrouted(Func<Tensor> call)
    {
        var before = FusedKernelOptions.Current;
        FusedKernelOptions.Current = before with { DecayEnabled = false };
        try { return call(); }
        finally { FusedKernelOptions.Current = before; }
    }

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? keyPaddingMask, double? scale)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(g);
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        DecayKernels.CheckGate(g, k, nameof(g));
        if (g.dim() != 3)
            throw new ArgumentException($"The fused decay kernels take one log decay per head and token, g [B, H, T]; got {Heads.Shape(g)}. " +
                                        "For one decay per key channel use GlaKernels.", nameof(g));
        if (scale is { } s && (!double.IsFinite(s) || s == 0))
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "scale must be a finite, non-zero number (null = 1/√D).");
    }
}

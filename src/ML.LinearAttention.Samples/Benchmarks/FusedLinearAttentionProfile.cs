using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>The fused bidirectional kernels timed one by one (`bench kernels --profile-fused`).</summary>
internal static class FusedLinearAttentionProfile
{
    /// <summary>
    /// GPU time of each fused kernel on these inputs, and of the whole differentiable call, measured with
    /// <see cref="GpuTimer"/> (device time, host overhead hidden): for tuning and for the kernel benchmark. Parts:
    /// "fwd_state", "fwd_out", "bwd_q", "bwd_kv" (each with its buffer allocation), "forward" and "backward" (launch
    /// layer, both kernels), "autograd fwd+bwd" (the autograd function, as a model calls it, upstream gradient of ones),
    /// "autograd, no kernels" (the same with no kernel launched: the host overhead of that path).
    /// </summary>
    /// <param name="q">Raw queries [B, H, T, D] on a CUDA device.</param>
    /// <param name="k">Raw keys [B, H, T, D].</param>
    /// <param name="v">Values [B, H, T, Dv].</param>
    /// <param name="featureMap">φ applied inside the kernels.</param>
    /// <param name="tensorCores">Time the tensor-core kernels (where they apply) or the CUDA-core ones.</param>
    /// <param name="repetitions">Runs per part.</param>
    public static IReadOnlyList<(string Part, GpuTiming Timing)> Run(Tensor q, Tensor k, Tensor v, FusedFeatureMap featureMap,
        bool tensorCores = true, int repetitions = 20)
    {
        FusedLinearAttention.Check(q, k, v, null, featureMap, LinearAttentionKernels.DefaultEps);
        if (FusedLinearAttention.FusedReason(q, k, v, null) is { } reason) throw new InvalidOperationException("The fused kernels cannot run on these inputs: " + reason);
        using var scope = NewDisposeScope();
        (q, k, v) = (q.detach().contiguous(), k.detach().contiguous(), v.detach().contiguous());
        var epsn = FusedLaunch.EpsN(null, q.shape[0], q.shape[2], LinearAttentionKernels.DefaultEps, q.device);
        var (o, s, z, _, _) = FusedLaunch.Forward(q, k, v, null, epsn, featureMap, tensorCores);
        var dout = torch.ones_like(o);
        var parts = new List<(string, GpuTiming)>();
        void Time(string part, Action step)
        {
            step();   // warm-up: allocator, module load
            parts.Add((part, GpuTimer.Measure(q.device, () => { using var inner = NewDisposeScope(); step(); }, repetitions)));
        }
        Time("fwd_state", () => FusedLaunch.Forward(q, k, v, null, epsn, featureMap, tensorCores, FusedKernels.State));
        Time("fwd_out", () => FusedLaunch.Forward(q, k, v, null, epsn, featureMap, tensorCores, FusedKernels.Out));
        Time("bwd_q", () => FusedLaunch.Backward(q, k, v, null, epsn, s, z, o, dout, featureMap, tensorCores, FusedKernels.BackwardQ));
        Time("bwd_kv", () => FusedLaunch.Backward(q, k, v, null, epsn, s, z, o, dout, featureMap, tensorCores, FusedKernels.BackwardKv));
        Time("forward", () => FusedLaunch.Forward(q, k, v, null, epsn, featureMap, tensorCores));
        Time("backward", () => FusedLaunch.Backward(q, k, v, null, epsn, s, z, o, dout, featureMap, tensorCores));
        var (lq, lk, lv) = (q.requires_grad_(true), k.requires_grad_(true), v.requires_grad_(true));
        Time("autograd fwd+bwd", () =>
        {
            var output = FusedLinearAttention.Bidirectional(lq, lk, lv, null, featureMap, LinearAttentionKernels.DefaultEps, tensorCores);
            torch.autograd.grad(new[] { output }, new[] { lq, lk, lv }, new[] { dout });
        });
        // The same call with no kernel launched: its host column is the autograd path's own overhead (checks, buffers,
        // autograd node, the engine's call back into .NET).
        Time("autograd, no kernels", () =>
        {
            var output = FusedBidirectionalFunction.Run(lq, lk, lv, null, featureMap, LinearAttentionKernels.DefaultEps, tensorCores, FusedKernels.None);
            torch.autograd.grad(new[] { output }, new[] { lq, lk, lv }, new[] { dout });
        });
        return parts;
    }
}

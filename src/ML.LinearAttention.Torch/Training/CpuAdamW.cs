using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Process-wide switches of the training loop's CPU fast paths (on by default). They change speed, not the
/// model: turn one off to compare (`bench cpu-training` does) or to rule it out when looking for a problem.</summary>
public static class CpuFastPaths
{
    /// <summary>
    /// AdamW on CPU fp32 parameters as one vectorised pass per tensor over weights, gradient and both moments, with
    /// the gradient-clipping factor applied in the same pass and the gradients released afterwards (instead of
    /// TorchSharp's nine tensor operations per parameter, a separate clipping pass and zero-filled gradients that the
    /// next backward pass adds into). Same update as TorchSharp's AdamW, to float rounding.
    /// </summary>
    public static bool FusedAdamW { get; set; } = true;
}

/// <summary>
/// The fused CPU form of TorchSharp's <see cref="AdamW"/> step (see <see cref="CpuFastPaths.FusedAdamW"/>). It reads and
/// updates the optimizer's own state (step counts and moment tensors, through <c>state_dict()</c>, which returns the
/// live state objects), so the optimizer's learning rates, checkpoints and resumption work unchanged. Per element, in
/// fp32, as TorchSharp computes it: p ← p·(1 − lr·wd); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε), with g the gradient times the clipping factor.
/// </summary>
internal static class CpuAdamW
{
    /// <summary>Elements per work item: large enough that scheduling costs nothing, small enough to split the
    /// embedding table over the cores.</summary>
    private const long ChunkElements = 1 << 18;

    /// <summary>True when every parameter of <paramref name="optimizer"/> (and its gradient and moments) is a contiguous
    /// fp32 CPU tensor and the options are plain AdamW (no AMSGrad, not maximising).</summary>
    public static bool CanStep(AdamW optimizer)
    {
        if (!CpuFastPaths.FusedAdamW) return false;
        var states = optimizer.state_dict().State;
        int i = 0;
        foreach (var group in optimizer.ParamGroups.Cast<AdamW.ParamGroup>())
        {
            var o = (AdamW.Options)group.Options;
            if (o.amsgrad == true || o.maximize == true) return false;
            foreach (var p in group.Parameters)
            {
                var state = (AdamW.State)states[i++];
                if (!Fits(p, p) || !Fits(state.exp_avg, p) || !Fits(state.exp_avg_sq, p)) return false;
                using var g = p.grad;
                if (g is not null && !Fits(g, p)) return false;
            }
        }
        return true;
    }

    private static bool Fits(Tensor t, Tensor like)
        => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous() && t.numel() == like.numel();

    /// <summary>One AdamW step with the gradients scaled by <paramref name="gradientScale"/> (the clipping factor; 1 =
    /// none); the gradients are released afterwards, as <c>zero_grad(set_to_none: true)</c> does.</summary>
    public static void Step(AdamW optimizer, float gradientScale)
    {
        var states = optimizer.state_dict().State;
        var work = new List<Item>();
        var grads = new List<Tensor>();
        int i = 0;
        foreach (var group in optimizer.ParamGroups.Cast<AdamW.ParamGroup>())
        {
            var o = (AdamW.Options)group.Options;
            double lr = o.LearningRate!.Value, beta1 = o.beta1!.Value, beta2 = o.beta2!.Value;
            foreach (var p in group.Parameters)
            {
                var state = (AdamW.State)states[i++];
                var g = p.grad;
                if (g is null) continue;
                grads.Add(g);
                state.step += 1;
                double bc1 = 1 - Math.Pow(beta1, state.step), bc2 = 1 - Math.Pow(beta2, state.step);
                var h = new Hyper((float)(1 - lr * o.weight_decay!.Value), (float)beta1, (float)(1 - beta1), (float)beta2, (float)(1 - beta2),
                    (float)Math.Sqrt(bc2), (float)o.eps!.Value, (float)(-(lr / bc1)), gradientScale);
                IntPtr pp = NativeTensorAccess.DataPointer(p), gp = NativeTensorAccess.DataPointer(g),
                    mp = NativeTensorAccess.DataPointer(state.exp_avg), vp = NativeTensorAccess.DataPointer(state.exp_avg_sq);
                long n = p.numel();
                for (long start = 0; start < n; start += ChunkElements)
                    work.Add(new Item(pp, gp, mp, vp, start, Math.Min(ChunkElements, n - start), h));
            }
        }
        try
        {
            int threads = Parallelism;
            if (threads == 1 || work.Count == 1) foreach (var item in work) Update(item);
            else Parallel.ForEach(work, new ParallelOptions { MaxDegreeOfParallelism = threads }, Update);
        }
        finally
        {
            foreach (var g in grads) g.Dispose();
        }
        foreach (var group in optimizer.ParamGroups.Cast<AdamW.ParamGroup>())
            foreach (var p in group.Parameters) p.grad = null;
    }

    /// <summary>Threads of the update: libtorch's CPU thread setting (MLContext options' CpuThreads), which the
    /// update does not compete with (libtorch is idle while it runs).</summary>
    internal static int Parallelism => Math.Max(1, torch.get_num_threads());

    private readonly record struct Hyper(float Decay, float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2, float SqrtBc2, float Eps,
        float NegativeStepSize, float GradientScale);

    private readonly record struct Item(IntPtr Param, IntPtr Grad, IntPtr ExpAvg, IntPtr ExpAvgSq, long Start, long Count, Hyper H);

    private static unsafe void Update(Item item)
    {
        var h = item.H;
        var p = new Span<float>((float*)item.Param + item.Start, (int)item.Count);
        var g = new ReadOnlySpan<float>((float*)item.Grad + item.Start, (int)item.Count);
        var m = new Span<float>((float*)item.ExpAvg + item.Start, (int)item.Count);
        var v = new Span<float>((float*)item.ExpAvgSq + item.Start, (int)item.Count);
        int j = 0;
        if (Vector.IsHardwareAccelerated && p.Length >= Vector<float>.Count)
        {
            var vp = MemoryMarshal.Cast<float, Vector<float>>(p);
            var vg = MemoryMarshal.Cast<float, Vector<float>>(g);
            var vm = MemoryMarshal.Cast<float, Vector<float>>(m);
            var vv = MemoryMarshal.Cast<float, Vector<float>>(v);
            Vector<float> decay = new(h.Decay), b1 = new(h.Beta1), omb1 = new(h.OneMinusBeta1), b2 = new(h.Beta2), omb2 = new(h.OneMinusBeta2),
                sqrtBc2 = new(h.SqrtBc2), eps = new(h.Eps), step = new(h.NegativeStepSize), scale = new(h.GradientScale);
            for (int k = 0; k < vp.Length; k++)
            {
                var gk = vg[k] * scale;
                var mk = vm[k] * b1 + gk * omb1;
                var vk = vv[k] * b2 + omb2 * gk * gk;
                vm[k] = mk;
                vv[k] = vk;
                var denom = Vector.SquareRoot(vk) / sqrtBc2 + eps;
                vp[k] = vp[k] * decay + step * (mk / denom);
            }
            j = vp.Length * Vector<float>.Count;
        }
        for (; j < p.Length; j++)
        {
            float gk = g[j] * h.GradientScale;
            float mk = m[j] * h.Beta1 + gk * h.OneMinusBeta1;
            float vk = v[j] * h.Beta2 + h.OneMinusBeta2 * gk * gk;
            m[j] = mk;
            v[j] = vk;
            float denom = MathF.Sqrt(vk) / h.SqrtBc2 + h.Eps;
            p[j] = p[j] * h.Decay + h.NegativeStepSize * (mk / denom);
        }
    }
}

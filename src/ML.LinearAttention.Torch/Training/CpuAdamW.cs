using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// The fused CPU form of TorchSharp's <see cref="AdamW"/> step (see <see cref="CpuFastPaths.FusedAdamW"/>). It reads and
/// updates the optimizer's own state (step counts and moment tensors, through <c>state_dict()</c>, which returns the
/// live state objects), so the optimizer's learning rates, checkpoints and resumption work unchanged. Per element, in
/// fp32, as TorchSharp computes it: p ← p·(1 − lr·wd); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε), with g the gradient times the clipping factor.
/// Under bf16 mixed precision whose gradients stay in the bf16 copy (<see cref="MixedPrecision.GradientsStayInCopy"/>),
/// the same pass reads the copy's bf16 gradient and writes the updated weight back into the copy, rounded to bf16:
/// no fp32 gradient is allocated, and no separate pass copies the weights.
/// </summary>
internal static class CpuAdamW
{
    /// <summary>Elements per work item: large enough that scheduling costs nothing, small enough to split the
    /// embedding table over the cores.</summary>
    private const long ChunkElements = 1 << 18;

    /// <summary>True when every parameter of <paramref name="optimizer"/> (and its gradient and moments) is a contiguous
    /// fp32 CPU tensor and the options are plain AdamW (no AMSGrad, not maximising).</summary>
    public static bool CanStep(AdamW optimizer, MixedPrecision? mixedPrecision = null)
    {
        if (!CpuFastPaths.FusedAdamW) return false;
        bool inCopy = mixedPrecision?.GradientsStayInCopy == true;
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
                if (!inCopy) continue;
                var copy = mixedPrecision!.LowPrecisionCopy(p);
                if (copy is null || !FitsBFloat16(copy, p)) return false;
                using var copyGrad = copy.grad;
                if (copyGrad is not null && (g is not null || !FitsBFloat16(copyGrad, p))) return false;
            }
        }
        return true;
    }

    private static bool Fits(Tensor t, Tensor like)
        => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.is_contiguous() && t.numel() == like.numel();

    private static bool FitsBFloat16(Tensor t, Tensor like)
        => t.device_type == DeviceType.CPU && t.dtype == ScalarType.BFloat16 && t.is_contiguous() && t.numel() == like.numel();

    /// <summary>One AdamW step with the gradients scaled by <paramref name="gradientScale"/> (the clipping factor; 1 =
    /// none); the gradients are released afterwards, as <c>zero_grad(set_to_none: true)</c> does.</summary>
    public static void Step(AdamW optimizer, float gradientScale, MixedPrecision? mixedPrecision = null)
    {
        bool inCopy = mixedPrecision?.GradientsStayInCopy == true;
        var copies = new List<Tensor>();
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
                var copy = inCopy ? mixedPrecision!.LowPrecisionCopy(p) : null;
                var g = copy is null ? p.grad : copy.grad;
                if (g is null) continue;
                grads.Add(g);
                if (copy is not null) copies.Add(copy);
                state.step += 1;
                double bc1 = 1 - Math.Pow(beta1, state.step), bc2 = 1 - Math.Pow(beta2, state.step);
                var h = new Hyper((float)(1 - lr * o.weight_decay!.Value), (float)beta1, (float)(1 - beta1), (float)beta2, (float)(1 - beta2),
                    (float)Math.Sqrt(bc2), (float)o.eps!.Value, (float)(-(lr / bc1)), gradientScale);
                IntPtr pp = NativeTensorAccess.DataPointer(p), gp = NativeTensorAccess.DataPointer(g),
                    mp = NativeTensorAccess.DataPointer(state.exp_avg), vp = NativeTensorAccess.DataPointer(state.exp_avg_sq),
                    cp = copy is null ? IntPtr.Zero : NativeTensorAccess.DataPointer(copy);
                long n = p.numel();
                for (long start = 0; start < n; start += ChunkElements)
                    work.Add(new Item(pp, gp, mp, vp, cp, start, Math.Min(ChunkElements, n - start), h));
            }
        }
        try
        {
            int threads = Parallelism;
            Action<Item> update = item => { if (item.Copy == IntPtr.Zero) Update(item); else UpdateWithBFloat16Copy(item); };
            if (threads == 1 || work.Count == 1) foreach (var item in work) update(item);
            else Parallel.ForEach(work, new ParallelOptions { MaxDegreeOfParallelism = threads }, update);
        }
        finally
        {
            foreach (var g in grads) g.Dispose();
        }
        foreach (var group in optimizer.ParamGroups.Cast<AdamW.ParamGroup>())
            foreach (var p in group.Parameters) p.grad = null;
        foreach (var copy in copies) copy.grad = null;
    }

    /// <summary>Threads of the update: libtorch's CPU thread setting (MLContext options' CpuThreads), which the
    /// update does not compete with (libtorch is idle while it runs).</summary>
    internal static int Parallelism => Math.Max(1, torch.get_num_threads());

    private readonly record struct Hyper(float Decay, float Beta1, float OneMinusBeta1, float Beta2, float OneMinusBeta2, float SqrtBc2, float Eps,
        float NegativeStepSize, float GradientScale);

    /// <summary>A chunk of one parameter; <see cref="Copy"/> is its bf16 copy (whose bf16 gradient <see cref="Grad"/>
    /// then is), or zero for an fp32 gradient and no copy.</summary>
    private readonly record struct Item(IntPtr Param, IntPtr Grad, IntPtr ExpAvg, IntPtr ExpAvgSq, IntPtr Copy, long Start, long Count, Hyper H);

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

    /// <summary><see cref="Update"/> reading a bf16 gradient and writing the new weight also into the bf16 copy
    /// (round to nearest even, as libtorch's conversion does).</summary>
    private static unsafe void UpdateWithBFloat16Copy(Item item)
    {
        var h = item.H;
        float* p = (float*)item.Param + item.Start, m = (float*)item.ExpAvg + item.Start, v = (float*)item.ExpAvgSq + item.Start;
        ushort* g = (ushort*)item.Grad + item.Start, copy = (ushort*)item.Copy + item.Start;
        long n = item.Count, j = 0;
        int width = Vector<ushort>.Count, half = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated && Vector<float>.Count * 2 == width)
        {
            Vector<float> decay = new(h.Decay), b1 = new(h.Beta1), omb1 = new(h.OneMinusBeta1), b2 = new(h.Beta2), omb2 = new(h.OneMinusBeta2),
                sqrtBc2 = new(h.SqrtBc2), eps = new(h.Eps), step = new(h.NegativeStepSize), scale = new(h.GradientScale);
            Vector<uint> roundingBias = new(0x7FFF), one = Vector<uint>.One;
            Vector<float> Half(long at, Vector<uint> gradBits)
            {
                var gk = Vector.AsVectorSingle(Vector.ShiftLeft(gradBits, 16)) * scale;
                var mk = Unsafe.ReadUnaligned<Vector<float>>(m + at) * b1 + gk * omb1;
                var vk = Unsafe.ReadUnaligned<Vector<float>>(v + at) * b2 + omb2 * gk * gk;
                Unsafe.WriteUnaligned(m + at, mk);
                Unsafe.WriteUnaligned(v + at, vk);
                var pk = Unsafe.ReadUnaligned<Vector<float>>(p + at) * decay + step * (mk / (Vector.SquareRoot(vk) / sqrtBc2 + eps));
                Unsafe.WriteUnaligned(p + at, pk);
                var bits = Vector.AsVectorUInt32(pk);
                return Vector.AsVectorSingle(Vector.ShiftRightLogical(bits + roundingBias + (Vector.ShiftRightLogical(bits, 16) & one), 16));
            }
            for (; j + width <= n; j += width)
            {
                Vector.Widen(Unsafe.ReadUnaligned<Vector<ushort>>(g + j), out Vector<uint> low, out Vector<uint> high);
                var lowBits = Vector.AsVectorUInt32(Half(j, low));
                var highBits = Vector.AsVectorUInt32(Half(j + half, high));
                Unsafe.WriteUnaligned(copy + j, Vector.Narrow(lowBits, highBits));
            }
        }
        for (; j < n; j++)
        {
            float gk = BitConverter.UInt32BitsToSingle((uint)g[j] << 16) * h.GradientScale;
            float mk = m[j] * h.Beta1 + gk * h.OneMinusBeta1;
            float vk = v[j] * h.Beta2 + h.OneMinusBeta2 * gk * gk;
            m[j] = mk;
            v[j] = vk;
            float pk = p[j] * h.Decay + h.NegativeStepSize * (mk / (MathF.Sqrt(vk) / h.SqrtBc2 + h.Eps));
            p[j] = pk;
            copy[j] = BFloat16Bits.FromSingle(pk);
        }
    }
}

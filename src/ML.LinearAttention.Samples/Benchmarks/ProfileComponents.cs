using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;
using Component = Microsoft.ML.LinearAttention.Samples.Benchmarks.StepProfile.Component;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>Device milliseconds of one linear layer's forward + backward, by (rows, in, out, bias): each shape is timed once per point.</summary>
internal sealed class GemmTimes : Dictionary<(long Rows, long In, long Out, bool Bias), double>;

/// <summary>
/// The components of a training step, each run alone at the step's shapes (forward and backward through autograd,
/// gradients taken with autograd.grad so that nothing accumulates between runs), for <see cref="StepProfile"/>.
/// </summary>
internal static class ProfileComponents
{
    private static string Shape(long[] s) => "[" + string.Join(", ", s) + "]";

    /// <summary>Device milliseconds of forward + backward of <paramref name="forward"/> with respect to <paramref name="inputs"/>.</summary>
    private static double FwdBwd(ComponentTimer timer, Tensor[] inputs, Func<Tensor> forward) => timer.Measure(() =>
    {
        using var scope = NewDisposeScope();
        var y = forward();
        torch.autograd.grad(new[] { y }, inputs, new[] { ones_like(y) }, allow_unused: true);
    }).Ms;

    private static Tensor Leaf(long[] shape, ProfiledStep step) => randn(shape, dtype: step.RunDtype, device: step.Device).requires_grad_(true);

    /// <summary>Every linear layer: x Wᵀ + b forward, dX and dW (and db) backward, grouped by shape.</summary>
    public static IEnumerable<Component> Gemms(StepShapes shapes, ProfiledStep step, ComponentTimer timer, GemmTimes cache)
    {
        foreach (var group in shapes.Linears.GroupBy(l => (l.Rows, l.In, l.Out, l.Bias)).OrderByDescending(g => g.Key.Rows * g.Key.In * g.Key.Out))
        {
            double ms = Gemm(group.Key, step, timer, cache);
            string names = string.Join(", ", group.Select(l => LayerName(l.Name)).Distinct());
            yield return new Component("GEMMs", $"{names}: [{group.Key.Rows} × {group.Key.In}] · [{group.Key.In} × {group.Key.Out}]ᵀ{(group.Key.Bias ? " + b" : "")}",
                group.Count(), ms, ms * group.Count());
        }
    }

    private static double Gemm((long Rows, long In, long Out, bool Bias) key, ProfiledStep step, ComponentTimer timer, GemmTimes cache)
    {
        if (cache.TryGetValue(key, out double cached)) return cached;
        using var scope = NewDisposeScope();
        var x = Leaf(new[] { key.Rows, key.In }, step);
        var w = Leaf(new[] { key.Out, key.In }, step);
        var b = key.Bias ? Leaf(new[] { key.Out }, step) : null;
        return cache[key] = FwdBwd(timer, b is null ? new[] { x, w } : new[] { x, w, b }, () => nn.functional.linear(x, w, b));
    }

    /// <summary>blocks.3.mixer.q_proj → mixer.q_proj (the layer's role; the block index is in the count).</summary>
    private static string LayerName(string name)
    {
        var parts = name.Split('.');
        return parts.Length > 2 && parts[0] == "blocks" ? string.Join('.', parts.Skip(2)) : name;
    }

    /// <summary>
    /// Each block's mixer, forward + backward at [B, T, C] (its parameters' gradients included), minus its own linear
    /// layers (already counted as GEMMs): the attention kernel, head split/merge, feature maps, rotary positions.
    /// </summary>
    public static IEnumerable<Component> Attention(StepShapes shapes, ProfiledStep step, ComponentTimer timer, GemmTimes cache)
    {
        foreach (var group in shapes.Mixers.GroupBy(m => m.Mixer.GetType().Name))
        {
            var (prefix, mixer) = group.First();
            double whole;
            using (var scope = NewDisposeScope())
            {
                var x = Leaf(shapes.BlockShape, step);
                var inputs = new[] { x }.Concat(mixer.parameters().Where(p => p.requires_grad)).ToArray();
                whole = FwdBwd(timer, inputs, () => mixer.forward(x, null));
            }
            double own = shapes.Linears.Where(l => l.Name.StartsWith(prefix + ".", StringComparison.Ordinal))
                .Sum(l => Gemm((l.Rows, l.In, l.Out, l.Bias), step, timer, cache));
            yield return new Component("attention", $"{group.Key} at {Shape(shapes.BlockShape)} without its projections ({whole:F3} ms whole, {own:F3} ms of GEMMs)",
                group.Count(), whole - own, (whole - own) * group.Count());
        }
    }

    /// <summary>Category of <see cref="AttentionParts"/>: a breakdown of "attention", not added to the step's total.</summary>
    public const string AttentionPartsCategory = "attention parts";

    /// <summary>
    /// The parts of a projected mixer's "attention" (q/k/v projections aside), each forward + backward alone: the head
    /// split of q, k, v with the query/key transform (rotary positions) on q and k; the per-head kernel on contiguous q, k
    /// and the split v (the kernel, feature maps, output norm, layout copies it makes); the head merge of its output.
    /// </summary>
    public static IEnumerable<Component> AttentionParts(StepShapes shapes, ProfiledStep step, ComponentTimer timer)
    {
        foreach (var group in shapes.Mixers.Where(m => m.Mixer is ProjectedMixer).GroupBy(m => m.Mixer.GetType().Name))
        {
            var mixer = (ProjectedMixer)group.First().Mixer;
            var shape = shapes.BlockShape;
            int h = mixer.Config.NumHeads;
            long[] heads = { shape[0], h, shape[1], shape[2] / h };
            double split, kernel, merge;
            using (var scope = NewDisposeScope())
            {
                var (q, k, v) = (Leaf(shape, step), Leaf(shape, step), Leaf(shape, step));
                var transform = mixer.QueryKeyTransform ?? (t => t);
                split = FwdBwd(timer, new[] { q, k, v }, () => new[] { transform(Heads.Split(q, h)), transform(Heads.Split(k, h)), Heads.Split(v, h) });
            }
            using (var scope = NewDisposeScope())
            {
                var (q, k, v) = (Leaf(heads, step), Leaf(heads, step), Leaf(shape, step));
                var inputs = new[] { q, k, v }.Concat(mixer.parameters().Where(p => p.requires_grad)).ToArray();
                kernel = FwdBwd(timer, inputs, () => new[] { mixer.MixHeadsAlone(q, k, Heads.Split(v, h)) });
            }
            using (var scope = NewDisposeScope())
            {
                var o = Leaf(heads, step);
                merge = FwdBwd(timer, new[] { o }, () => new[] { Heads.Merge(o) });
            }
            string at = $"at {Shape(shapes.BlockShape)}, {h} heads";
            yield return new Component(AttentionPartsCategory, $"{group.Key}: head split of q, k, v{(mixer.QueryKeyTransform is null ? "" : " + rotary on q and k")} {at}", group.Count(), split, split * group.Count());
            yield return new Component(AttentionPartsCategory, $"{group.Key}: per-head kernel (feature maps, attention, output norm, its layout copies) {at}", group.Count(), kernel, kernel * group.Count());
            yield return new Component(AttentionPartsCategory, $"{group.Key}: head merge {at}", group.Count(), merge, merge * group.Count());
        }
    }

    /// <summary>Device milliseconds of forward + backward of several outputs (upstream gradients of ones).</summary>
    private static double FwdBwd(ComponentTimer timer, Tensor[] inputs, Func<Tensor[]> forward) => timer.Measure(() =>
    {
        using var scope = NewDisposeScope();
        var ys = forward();
        torch.autograd.grad(ys, inputs, ys.Select(y => ones_like(y)).ToArray(), allow_unused: true);
    }).Ms;

    /// <summary>The blocks' RMSNorms, the final norm and the head's, forward + backward with the weight's gradient.</summary>
    public static IEnumerable<Component> Norms(StepShapes shapes, ProfiledStep step, ComponentTimer timer)
    {
        foreach (var group in shapes.Norms.GroupBy(n => Shape(n.Shape)))
        {
            double ms;
            string how;
            using (var scope = NewDisposeScope())
            {
                var shape = group.First().Shape;
                var x = Leaf(shape, step);
                var w = Leaf(new[] { shape[^1] }, step);
                ms = FwdBwd(timer, new[] { x, w }, () => FusedRmsNorm.Apply(x, w));   // what RmsNorm modules run: the kernels on CUDA when on
                how = FusedKernelOptions.Current.RmsNormEnabled && FusedRmsNorm.UnavailableReason(x, w) is null ? "fused" : "libtorch";
            }
            yield return new Component("norms", $"RMSNorm ({how}) at {group.Key}", group.Count(), ms, ms * group.Count());
        }
    }

    /// <summary>The FFN's GELU, the dropouts and the residual adds (forward; their backward is a pass-through).</summary>
    public static IEnumerable<Component> Elementwise(StepShapes shapes, ProfiledStep step, ComponentTimer timer)
    {
        long ffn = shapes.Linears.FirstOrDefault(l => l.Name.EndsWith("ffn_in", StringComparison.Ordinal)).Out;
        if (shapes.PreNormBlocks > 0 && ffn > 0)
        {
            long[] shape = { shapes.BlockShape[0], shapes.BlockShape[1], ffn };
            double ms;
            using (var scope = NewDisposeScope())
            {
                var x = Leaf(shape, step);
                ms = FwdBwd(timer, new[] { x }, () => nn.functional.gelu(x));
            }
            yield return new Component("elementwise", $"GELU at {Shape(shape)}", shapes.PreNormBlocks, ms, ms * shapes.PreNormBlocks);
        }
        foreach (var group in shapes.Dropouts.Where(d => d.P > 0).GroupBy(d => (Shape(d.Shape), d.P)))
        {
            double ms;
            using (var scope = NewDisposeScope())
            {
                var x = Leaf(group.First().Shape, step);
                ms = FwdBwd(timer, new[] { x }, () => Encoder.DropoutKernels.Dropout(x, group.Key.P, training: true));
            }
            yield return new Component("elementwise", $"dropout p = {group.Key.P:G3} at {group.Key.Item1}", group.Count(), ms, ms * group.Count());
        }
        if (shapes.PreNormBlocks > 0)
        {
            double ms;
            using (var scope = NewDisposeScope())
            {
                var a = randn(shapes.BlockShape, dtype: step.RunDtype, device: step.Device);
                var b = randn(shapes.BlockShape, dtype: step.RunDtype, device: step.Device);
                ms = timer.Measure(() => { using var s = NewDisposeScope(); _ = a + b; }).Ms;
            }
            int count = 2 * shapes.PreNormBlocks;
            yield return new Component("elementwise", $"residual add at {Shape(shapes.BlockShape)}", count, ms, ms * count);
        }
    }

    /// <summary>Gradient clipping, AdamW over the fp32 masters and (mixed precision) the weight copy into the bf16 model, as the trainer runs them.</summary>
    public static IEnumerable<Component> Optimizer(ProfiledStep step, ComponentTimer timer)
    {
        using var scope = NewDisposeScope();
        using (no_grad())
            foreach (var p in step.Parameters)
                if (p.grad is null) p.grad = (randn_like(p) * 1e-3).DetachFromDisposeScope();
        double ms = timer.Measure(() => ModelTrainer.UpdateWeights(step.Optimizer, step.Parameters, step.Settings, step.MixedPrecision)).Ms;
        int tensors = step.Parameters.Count;
        long numbers = step.Parameters.Sum(p => p.numel());
        string how = FusedKernelOptions.Current.MultiTensorAdamWEnabled && FusedAdamWStep.UnavailableReason(step.Optimizer, step.MixedPrecision) is null
            ? "multi-tensor kernel" : "per tensor";
        yield return new Component("optimizer", $"clipping + AdamW{(step.MixedPrecision is null ? "" : " + fp32 → bf16 weight copy")} ({how}) over {tensors} tensors, {numbers:N0} parameters",
            1, ms, ms);
    }

    /// <summary>Mixed precision only: each bf16 gradient cast to fp32 and added into its master's gradient (MixedPrecision.MoveGradients).</summary>
    public static IEnumerable<Component> Copies(ProfiledStep step, ComponentTimer timer)
    {
        if (step.MixedPrecision is null) yield break;
        double ms;
        using (var scope = NewDisposeScope())
        {
            var pairs = step.Parameters.Where(p => p.grad is not null).Select(p => (Master: p.grad!, Low: randn_like(p, dtype: ScalarType.BFloat16))).ToList();
            ms = timer.Measure(() =>
            {
                using var s = NewDisposeScope();
                using var _ = no_grad();
                foreach (var (master, low) in pairs) master.add_(low.to(ScalarType.Float32));
            }).Ms;
        }
        yield return new Component("copies", $"bf16 → fp32 gradient moves over {step.Parameters.Count} tensors", 1, ms, ms);
    }
}

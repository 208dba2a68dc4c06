using System.Runtime.CompilerServices;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// The trainer's optimizer step on CUDA as one multi-tensor kernel (<see cref="FusedMultiTensorAdamW"/>): clipping by
/// the global gradient norm computed on the device, TorchSharp's AdamW update of the fp32 masters, and (mixed
/// precision) the rounding of the updated weights into the bf16 model, over TorchSharp's own AdamW state (its moments
/// and step counts), so checkpoints save and resume it unchanged. Its naive twin is the per-tensor path
/// (<see cref="GradientClipping.ClipByGlobalNorm"/>, <c>AdamW.step</c>, <see cref="MixedPrecision.SyncWeights"/>), which
/// runs on the CPU, when the switch is off, and for settings the kernel does not cover (amsgrad, maximize, groups with
/// different betas, ε or learning rates, tensors whose step counts differ).
/// </summary>
internal static class FusedAdamWStep
{
    // One plan per optimizer (its device table of tensor addresses), rebuilt when the addresses change.
    private static readonly ConditionalWeakTable<AdamW, StrongBox<FusedMultiTensorAdamW.Plan?>> Plans = new();

    /// <summary>Null when <see cref="TryStep"/> would run the kernel for this optimizer now, else why not.</summary>
    internal static string? UnavailableReason(AdamW optimizer, MixedPrecision? mixedPrecision)
    {
        using var scope = NewDisposeScope();
        return Collect(optimizer, mixedPrecision, out _, out _, out _);
    }

    /// <summary>
    /// Clips, updates and (mixed precision) copies the weights with the kernel and returns true; false, having done
    /// nothing, when the kernel is switched off or does not apply (then the caller runs the per-tensor path).
    /// </summary>
    internal static bool TryStep(AdamW optimizer, TrainingSettings s, MixedPrecision? mixedPrecision)
    {
        if (!FusedKernelOptions.Current.MultiTensorAdamWEnabled) return false;
        using var scope = NewDisposeScope();
        if (Collect(optimizer, mixedPrecision, out var entries, out var states, out var options) is not null) return false;
        var table = FusedMultiTensorAdamW.Table(entries);
        var box = Plans.GetOrCreateValue(optimizer);
        if (box.Value is null || !box.Value.Matches(table))
        {
            box.Value?.Dispose();
            box.Value = new FusedMultiTensorAdamW.Plan(entries);
        }
        foreach (var state in states) state.step++;
        box.Value.Step(options.LearningRate!.Value, options.beta1!.Value, options.beta2!.Value, options.eps!.Value, states[0].step,
            s.MaxGradientNorm > 0 ? s.MaxGradientNorm : null);
        return true;
    }

    /// <summary>The tensors with a gradient, their AdamW states and the shared options; or why the kernel does not apply.</summary>
    private static string? Collect(AdamW optimizer, MixedPrecision? mixedPrecision, out List<FusedMultiTensorAdamW.Entry> entries,
        out List<AdamW.State> states, out AdamW.Options options)
    {
        entries = new(); states = new(); options = null!;
        var allStates = optimizer.state_dict().State;
        int index = 0;
        foreach (var controller in optimizer.ParamGroups)
        {
            if (controller is not ParamGroup group || group.Options is not AdamW.Options o) return "a parameter group has no AdamW options.";
            if (o.amsgrad == true || o.maximize == true) return "amsgrad and maximize are not implemented by the kernel.";
            options ??= o;
            if (o.beta1 != options.beta1 || o.beta2 != options.beta2 || o.eps != options.eps || o.LearningRate != options.LearningRate)
                return "the parameter groups differ in betas, ε or learning rate.";
            foreach (var p in group.Parameters)
            {
                var state = (AdamW.State)allStates[index++];
                var grad = p.grad;
                if (grad is null) continue;
                entries.Add(new FusedMultiTensorAdamW.Entry(p, grad, state.exp_avg, state.exp_avg_sq, mixedPrecision?.LowPrecisionCopy(p), o.weight_decay ?? 0));
                states.Add(state);
            }
        }
        if (options is null) return "the optimizer has no parameter group.";
        long first = states.Count > 0 ? states[0].step : 0;
        if (states.Any(st => st.step != first)) return "the tensors' step counts differ (some had no gradient on earlier steps).";
        return FusedMultiTensorAdamW.UnavailableReason(entries);
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// Activation checkpointing of one encoder block (<see cref="EncoderBlock"/>, <see cref="PostNormBlock"/>) as a custom
/// autograd function: the forward pass runs without building a graph and keeps only the block's input; the backward pass recomputes the block's forward from
/// that input (with the same dropout masks) and back-propagates through it, which accumulates the block's parameter
/// gradients and returns the input's gradient. Memory per block falls from all its activations to one [B, T, C]
/// tensor, for about one extra forward pass of compute.
/// <para>Dropout masks are reproduced exactly: on the CPU the generator state is saved and restored; on CUDA (whose
/// generator state TorchSharp 0.107 does not expose) the block's forward is reseeded with a seed drawn from the CPU
/// generator, both times, so recomputation sees the same masks (the random stream differs from an unchecked run,
/// deterministically).</para>
/// </summary>
internal sealed class BlockCheckpoint : autograd.SingleTensorFunction<BlockCheckpoint>
{
    /// <summary>Holds non-tensor arguments, so that autograd does not treat the mask as a differentiable input.</summary>
    private sealed class Box(object? value)
    {
        public object? Value { get; } = value;
    }

    public override string Name => nameof(BlockCheckpoint);

    /// <summary>
    /// Runs <paramref name="block"/> on x [B, T, C] with mask [B, T] (or null) under checkpointing. An exception in the
    /// backward recomputation (e.g. CUDA out of memory) cannot cross libtorch's autograd engine (it would end the
    /// process), so it goes to <paramref name="failed"/> and the block returns a placeholder input gradient; the caller
    /// rethrows it after backward (<see cref="SequenceModel.ThrowIfCheckpointFailed"/>).
    /// </summary>
    public static Tensor Run(nn.Module<Tensor, Tensor?, Tensor> block, Tensor x, Tensor? mask, Action<Exception> failed) => apply(new Box(block), x, new Box((mask, failed)));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var block = (nn.Module<Tensor, Tensor?, Tensor>)((Box)vars[0]).Value!;
        var x = (Tensor)vars[1];
        var (mask, failed) = ((Tensor?, Action<Exception>))((Box)vars[2]).Value!;
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("block", block);
        ctx.save_data("failed", failed);
        // Its own handle: the caller's dispose scope may free the mask it passed (e.g. the CLS-extended one) before backward.
        ctx.save_data("mask", new Box(mask?.detach().DetachFromDisposeScope()));
        ctx.save_data("rng", new Box(SaveRandomState(x.device)));
        return block.forward(x, mask);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        try { return Recompute(ctx, grad_output); }
        catch (Exception e)
        {
            ((Action<Exception>)ctx.get_data("failed"))(e);
            // A defined input gradient (its values are never used: the caller rethrows after backward). Left undefined,
            // it would reach the checkpointed block below, whose TorchSharp node then fills it from an output cache that
            // the forward pass's dispose scope has already freed, and the process ends.
            return new List<Tensor> { null!, Placeholder(grad_output), null! };
        }
    }

    /// <summary>Zeros shaped as the block's input (= its output), or the incoming gradient itself when even that fails.</summary>
    private static Tensor Placeholder(Tensor gradOutput)
    {
        try { return zeros_like(gradOutput); }
        catch (Exception) { return gradOutput.detach(); }
    }

    private static List<Tensor> Recompute(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var block = (nn.Module<Tensor, Tensor?, Tensor>)ctx.get_data("block");
        var mask = (Tensor?)((Box)ctx.get_data("mask")).Value;
        var state = ((Box)ctx.get_data("rng")).Value!;
        using var scope = NewDisposeScope();
        var x = ctx.get_saved_variables()[0];
        using var current = x.device.type == DeviceType.CPU ? random.get_rng_state() : null;
        RestoreRandomState(state);
        Tensor inputGrad;
        using (enable_grad())
        {
            var input = x.detach().requires_grad_(true);
            var output = block.forward(input, mask);
            autograd.backward(new[] { output }, new[] { grad_output });
            inputGrad = input.grad ?? zeros_like(input);
        }
        if (current is not null) random.set_rng_state(current);
        return new List<Tensor> { null!, inputGrad.MoveToOuterDisposeScope(), null! };
    }

    private static object SaveRandomState(Device device)
    {
        // The state must outlive the caller's dispose scope (it is read in the backward pass).
        if (device.type == DeviceType.CPU) return random.get_rng_state().DetachFromDisposeScope();
        // CUDA: no state access in TorchSharp 0.107; reseed from a seed drawn on the CPU generator (no GPU sync).
        long seed = randint(0, int.MaxValue, new long[] { 1 }, dtype: ScalarType.Int64).item<long>();
        cuda.manual_seed_all(seed);
        return seed;
    }

    private static void RestoreRandomState(object state)
    {
        if (state is Tensor cpuState) random.set_rng_state(cpuState);
        else cuda.manual_seed_all((long)state);
    }
}

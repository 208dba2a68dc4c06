using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// TorchSharp's autograd.Function hands backward a managed wrapper of the upstream gradient that nobody disposes, and
/// takes the returned gradients' wrappers without disposing them either (libtorch copies the tensors right after
/// backward returns). Left to the GC, each call's gradients stayed allocated on the GPU until a finalizer ran (seen on
/// an H200 as a growing CUDA memory high-water mark and kernels at half speed). The fused functions release them here:
/// the upstream gradient at the end of backward, the returned gradients at the next forward or backward call (libtorch
/// holds its own references by then).
/// </summary>
internal static class AutogradWrappers
{
    private static readonly System.Collections.Concurrent.ConcurrentQueue<Tensor> Returned = new();

    /// <summary>Disposes the wrappers of gradients returned by earlier backward calls; call first in forward and backward.</summary>
    public static void ReleaseReturned()
    {
        while (Returned.TryDequeue(out var t)) t.Dispose();
    }

    /// <summary>
    /// The list backward returns: <paramref name="gradients"/> taken out of the current dispose scope and queued for
    /// release, then null for the non-tensor argument; <paramref name="upstream"/>'s wrapper is disposed.
    /// </summary>
    public static List<Tensor> Return(Tensor upstream, params Tensor[] gradients)
    {
        var result = ReturnTensors(upstream, gradients);
        result.Add(null!);
        return result;
    }

    /// <summary>As <see cref="Return"/>, for a function whose inputs are all tensors (no trailing null).</summary>
    public static List<Tensor> ReturnTensors(Tensor upstream, params Tensor[] gradients)
    {
        var result = new List<Tensor>(gradients.Length + 1);
        foreach (var g in gradients)
        {
            var kept = g.DetachFromDisposeScope();
            Returned.Enqueue(kept);
            result.Add(kept);
        }
        upstream.Dispose();
        return result;
    }

    /// <summary>
    /// A fused function's backward: releases earlier gradients' wrappers, runs <paramref name="body"/> in a dispose scope
    /// (the saved tensors come back as new wrappers: unpacked inside it, they are released too), and says on stderr what
    /// failed before rethrowing — an exception cannot cross libtorch's autograd engine, which then ends the process.
    /// </summary>
    /// <param name="what">The function, for the message ("the fused linear attention").</param>
    /// <param name="body">The gradients' computation.</param>
    public static List<Tensor> Backward(string what, Func<List<Tensor>> body)
    {
        try
        {
            ReleaseReturned();
            using var scope = NewDisposeScope();
            return body();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"ML.LinearAttention: {what} backward pass failed: " + e);
            throw;
        }
    }
}

/// <summary>
/// The non-tensor arguments of a fused autograd function (mask, feature map, eps, switches) in one box, so that autograd
/// does not take the mask for a differentiable input.
/// </summary>
internal sealed class AutogradArguments(object? value)
{
    public object? Value { get; } = value;
}

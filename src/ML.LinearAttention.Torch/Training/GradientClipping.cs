using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Global L2 gradient-norm clipping with the arithmetic of <c>nn.utils.clip_grad_norm_</c> (per-tensor norms, the norm
/// of their stack, coefficient max / (norm + 1e-6) capped at 1) but without reading the norm back to the host:
/// TorchSharp's clip_grad_norm_ returns it as a double, a device synchronisation on every optimizer step that leaves
/// the GPU idle while the host queues the optimizer's kernels.
/// </summary>
public static class GradientClipping
{
    /// <summary>Scales the gradients of <paramref name="parameters"/> in place so their global L2 norm is at most <paramref name="maxNorm"/>.</summary>
    public static void ClipByGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (maxNorm <= 0) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "The gradient-norm limit must be positive.");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return;
        var coefficient = Coefficient(grads, maxNorm);
        foreach (var g in grads) g.mul_(coefficient);
    }

    /// <summary>The factor <see cref="ClipByGlobalNorm"/> multiplies the gradients by (a scalar tensor in the caller's
    /// dispose scope; 1 when the norm is within the limit).</summary>
    internal static Tensor Coefficient(IReadOnlyList<Tensor> grads, double maxNorm)
    {
        var norms = grads.Select(g => g.dtype == ScalarType.Float32 ? g.norm() : g.norm().to(ScalarType.Float32)).ToArray(); // bf16 gradients of a mixed-precision copy
        var total = norms.Length == 1 ? norms[0] : stack(norms).norm();
        return (total + 1e-6).reciprocal().mul(maxNorm).clamp_max(1.0);
    }

    /// <summary>The clipping factor read back to the host, for the fused CPU optimizer (on the CPU reading it costs no
    /// device synchronisation).</summary>
    internal static float CoefficientOnHost(IEnumerable<Parameter> parameters, double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        return grads.Count == 0 ? 1f : Coefficient(grads, maxNorm).item<float>();
    }
}

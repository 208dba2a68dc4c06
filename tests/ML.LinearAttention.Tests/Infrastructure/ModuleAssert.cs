using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>
/// A module against a naive twin written from its parameters: the fast side is the module itself (its own parameters
/// get gradients), the naive side gets fp32 leaf copies of every parameter by name. Outputs, the input gradient and
/// every parameter gradient are compared, as <see cref="KernelAssert.SameOutputsAndGradients"/> does for kernels.
/// </summary>
public static class ModuleAssert
{
    /// <param name="module">Module under test, already in the dtype of the case (bf16 training runs a bf16 copy of the model).</param>
    /// <param name="fast">The module's forward on x.</param>
    /// <param name="naive">Naive twin: x (x's dtype, requires grad) and fp32 copies of the parameters by name → output (any dtype).</param>
    /// <param name="x">Input; a leaf copy requires grad on each side.</param>
    /// <param name="outputMask">Positions compared (broadcast to the output) and receiving upstream gradient; null = all.</param>
    public static void SameOutputsAndGradients(nn.Module module, Func<Tensor, Tensor> fast,
        Func<Tensor, IReadOnlyDictionary<string, Tensor>, Tensor> naive, Tensor x, ScalarType dtype, string what,
        Tensor? outputMask = null, double? atol = null, double? rtol = null)
    {
        TorchRuntime.EnsureLoaded();
        var (a, r) = KernelAssert.Tolerance(dtype);
        a = atol ?? a; r = rtol ?? r;
        using var scope = NewDisposeScope();
        var named = module.named_parameters().ToList();
        Assert.NotEmpty(named);
        foreach (var (_, p) in named) p.grad = null;
        var xFast = x.detach().clone().requires_grad_(true);
        var xNaive = x.detach().clone().requires_grad_(true);
        var leaves = named.ToDictionary(n => n.Item1, n => n.Item2.detach().to(ScalarType.Float32).clone().requires_grad_(true));
        var yFast = fast(xFast);
        var yNaive = naive(xNaive, leaves);
        Assert.Equal(yNaive.shape, yFast.shape);
        Assert.Equal(x.dtype, yFast.dtype);
        Assert.False(yFast.isnan().any().item<bool>(), $"{what}: the module's output has NaN");
        KernelAssert.Close(yFast, yNaive, a, r, what + " output", outputMask);
        // One upstream gradient, representable in the case's dtype so both sides see the same values.
        var upstream = torch.randn(yNaive.shape, dtype: ScalarType.Float32).to(dtype).to(ScalarType.Float32);
        if (outputMask is not null) upstream = upstream * outputMask.to(ScalarType.Float32);
        yFast.backward(new[] { upstream.to(yFast.dtype) });
        yNaive.backward(new[] { upstream.to(yNaive.dtype) });
        Assert.True(xFast.grad is not null && xNaive.grad is not null, $"{what}: no gradient for the input");
        KernelAssert.Close(xFast.grad!, xNaive.grad!, a, r, what + " gradient of the input");
        foreach (var (name, p) in named)
        {
            var gn = leaves[name].grad;
            Assert.True(gn is not null, $"{what}: the naive twin gave no gradient for parameter {name} (does it use it?)");
            Assert.True(p.grad is not null, $"{what}: the module gave no gradient for parameter {name}");
            KernelAssert.Close(p.grad!, gn!, a, r, $"{what} gradient of parameter {name}");
        }
    }
}

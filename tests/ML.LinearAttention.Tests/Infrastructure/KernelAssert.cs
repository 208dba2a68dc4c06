using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>
/// fla-style checks: a fast kernel against its naive twin, outputs and gradients of every input that requires grad.
/// </summary>
public static class KernelAssert
{
    /// <summary>Tolerances per dtype: fp32 tight, bf16 loose.</summary>
    public static (double atol, double rtol) Tolerance(ScalarType dtype) => dtype == ScalarType.BFloat16 ? (5e-2, 5e-2) : (1e-4, 1e-3);

    /// <summary>
    /// Runs <paramref name="fast"/> and <paramref name="naive"/> on copies of <paramref name="inputs"/> (leaves; those
    /// with requires_grad get gradients), compares outputs, then back-propagates the same random upstream gradient
    /// through both and compares every input gradient. Comparison is in fp32 relative to the naive result's scale.
    /// </summary>
    public static void SameOutputsAndGradients(Func<Tensor[], Tensor> fast, Func<Tensor[], Tensor> naive, Tensor[] inputs,
        ScalarType dtype, string what, Tensor? outputMask = null, double? atol = null, double? rtol = null)
    {
        TorchRuntime.EnsureLoaded();
        var (a, r) = Tolerance(dtype);
        a = atol ?? a; r = rtol ?? r;
        using var scope = NewDisposeScope();
        var fastInputs = inputs.Select(Copy).ToArray();
        var naiveInputs = inputs.Select(Copy).ToArray();
        var outFast = fast(fastInputs);
        var outNaive = naive(naiveInputs);
        Assert.Equal(outNaive.shape, outFast.shape);
        Assert.False(outFast.isnan().any().item<bool>(), $"{what}: the fast output has NaN");
        Close(outFast, outNaive, a, r, what + " output", outputMask);
        var upstream = torch.randn_like(outNaive, dtype: ScalarType.Float32).to(outNaive.dtype);
        if (outputMask is not null) upstream = upstream * outputMask.to(upstream.dtype);
        outFast.backward(new[] { upstream });
        outNaive.backward(new[] { upstream });
        for (int i = 0; i < inputs.Length; i++)
        {
            if (!inputs[i].requires_grad) continue;
            var gf = fastInputs[i].grad;
            var gn = naiveInputs[i].grad;
            Assert.True(gn is not null, $"{what}: the naive kernel gave no gradient for input {i}");
            Assert.True(gf is not null, $"{what}: the fast kernel gave no gradient for input {i}");
            Close(gf!, gn!, a, r, $"{what} gradient of input {i}", null);
        }
    }

    /// <summary>Asserts |x − y| ≤ atol·scale + rtol·|y| elementwise, scale = max(1, max|y|).</summary>
    public static void Close(Tensor actual, Tensor expected, double atol, double rtol, string what, Tensor? mask = null)
    {
        var x = actual.detach().to(ScalarType.Float32);
        var y = expected.detach().to(ScalarType.Float32);
        if (mask is not null) { x = x * mask.to(ScalarType.Float32); y = y * mask.to(ScalarType.Float32); }
        double scale = Math.Max(1.0, y.abs().max().item<float>());
        var diff = (x - y).abs();
        var bound = y.abs() * rtol + atol * scale;
        var bad = diff > bound;
        if (bad.any().item<bool>())
        {
            double maxDiff = diff.max().item<float>();
            Assert.Fail($"{what}: {bad.sum().item<long>()} of {y.numel()} elements differ; max |diff| {maxDiff:G4}, scale {scale:G4}, atol {atol}, rtol {rtol}");
        }
    }

    /// <summary>A fresh leaf with the same values, dtype and requires_grad.</summary>
    public static Tensor Copy(Tensor t)
    {
        var c = t.detach().clone();
        return t.requires_grad ? c.requires_grad_(true) : c;
    }

    /// <summary>Random leaf of the given shape and dtype (values drawn in fp32 from a seeded generator).</summary>
    public static Tensor Random(long[] shape, ScalarType dtype, bool requiresGrad = true, double scale = 1.0)
    {
        var t = (torch.randn(shape, dtype: ScalarType.Float32) * scale).to(dtype);
        return requiresGrad ? t.requires_grad_(true) : t;
    }

    /// <summary>
    /// Leaf q, k [B, H, T, dk] and v [B, H, T, dv] (B = number of rows, T = longest length), drawn in that order with
    /// <see cref="Random"/>.
    /// </summary>
    public static (Tensor q, Tensor k, Tensor v) Qkv(long[] lengths, ScalarType dtype, long heads = 2, long dk = 8, long dv = 6)
    {
        long b = lengths.Length, t = lengths.Max();
        var q = Random(new[] { b, heads, t, dk }, dtype);
        var k = Random(new[] { b, heads, t, dk }, dtype);
        var v = Random(new[] { b, heads, t, dv }, dtype);
        return (q, k, v);
    }

    /// <summary>[B, T] padding mask with the given true lengths (right padding).</summary>
    /// <summary>
    /// Inputs of a fused-kernel case: raw q, k [B, H, T, d] (non-negative for the identity map, whose q and k are
    /// precomputed feature maps), v [B, H, T, dv], all requiring gradients, and a length mask when the lengths differ.
    /// </summary>
    public static (Tensor[] X, Tensor? Mask) FusedInputs(long[] lengths, int h, int d, int dv, ScalarType dtype, bool nonNegative)
    {
        long b = lengths.Length, t = lengths.Max();
        var q = Random(new[] { b, h, t, d }, dtype, requiresGrad: false);
        var k = Random(new[] { b, h, t, d }, dtype, requiresGrad: false);
        if (nonNegative) { q = q.abs(); k = k.abs(); }
        var x = new[] { q.requires_grad_(true), k.requires_grad_(true), Random(new[] { b, h, t, dv }, dtype) };
        return (x, lengths.Distinct().Count() > 1 ? LengthMask(lengths) : null);
    }

    public static Tensor LengthMask(params long[] lengths)
    {
        long t = lengths.Max();
        return torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1);
    }

    /// <summary>[B, 1, T, 1] mask for comparing [B, H, T, D] outputs at real positions only.</summary>
    public static Tensor HeadMask(Tensor keyPaddingMask) => keyPaddingMask.unsqueeze(1).unsqueeze(-1);
}

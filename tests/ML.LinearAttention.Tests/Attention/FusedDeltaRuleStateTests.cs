using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The fused delta-rule chunk scan on the CPU: the routing (CUDA only), its refusals, and the algebra the kernels rely on —
/// the scan delta_rule_state.cu runs (x = P + s₁·A X; X ← d ⊙ X + s₂·Bᵀ x + R), written here with torch ops in the packed
/// layout, gives the chunk loop's states and V' forward, and its reverse form followed by
/// <see cref="DeltaRuleStateFunction.Gradients"/> gives autograd's gradients of the loop in W, U, K̃ and d. The kernel
/// itself is checked against the same scan by tests/FusedKernelEmulator (delta_state.cpp) and on a GPU by
/// `bench kernels --verify-fused --only delta`.
/// </summary>
public class FusedDeltaRuleStateTests
{
    /// <summary>delta_state_scan's arithmetic: the packed [N, NC, Dk·Dv + C·Dv] output (X before each step, then x).</summary>
    private static Tensor Scan(Tensor p, Tensor a, Tensor b, Tensor? r, Tensor? d, float sign1, float sign2, bool reverse)
    {
        long n = a.shape[0], nc = a.shape[1], dk = a.shape[3], dv = p.shape[3];
        var x = torch.zeros(n, dk, dv, dtype: p.dtype);
        var states = new Tensor[nc];
        var outs = new Tensor[nc];
        for (long step = 0; step < nc; step++)
        {
            long i = reverse ? nc - 1 - step : step;
            states[i] = x;
            var xi = p[.., i] + sign1 * a[.., i].matmul(x);
            outs[i] = xi;
            x = (d is null ? x : x * d[.., i].unsqueeze(-1)) + sign2 * b[.., i].transpose(-1, -2).matmul(xi);
            if (r is not null) x = x + r[.., i];
        }
        return torch.cat(new[] { torch.stack(states, 1).flatten(2), torch.stack(outs, 1).flatten(2) }, -1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheScanAndItsReverseGiveTheLoopsOutputsAndGradients(bool decayed)
    {
        torch.manual_seed(5);
        long n = 3, nc = 4, chunk = 8, dk = 6, dv = 5;
        var f32 = ScalarType.Float32;
        var w = (torch.randn(n, nc, chunk, dk, dtype: f32) * 0.3).requires_grad_();
        var u = torch.randn(n, nc, chunk, dv, dtype: f32).requires_grad_();
        var kt = (torch.randn(n, nc, chunk, dk, dtype: f32) * 0.3).requires_grad_();
        var d = decayed ? torch.rand(n, nc, dk, dtype: f32).add(0.5).requires_grad_() : null;
        var (states, vNew) = DeltaRule.InterChunkLoop(w, u, kt, d?.unsqueeze(-1), n, dk, dv);
        var gStates = torch.randn_like(states);
        var gVNew = torch.randn_like(vNew);
        var inputs = decayed ? new[] { w, u, kt, d! } : new[] { w, u, kt };
        var expected = torch.autograd.grad(new[] { states, vNew }, inputs, new[] { gStates, gVNew });

        var packed = Scan(u.detach(), w.detach(), kt.detach(), null, d?.detach(), -1f, 1f, reverse: false);
        Assert.True(packed.narrow(-1, 0, dk * dv).view(n, nc, dk, dv).allclose(states, rtol: 1e-5, atol: 1e-5), "states");
        Assert.True(packed.narrow(-1, dk * dv, chunk * dv).view(n, nc, chunk, dv).allclose(vNew, rtol: 1e-5, atol: 1e-5), "V'");

        // The backward's reverse scan reads the upstream gradient in the packed layout: dStates (R), then dV' (P).
        var g = torch.cat(new[] { gStates.flatten(2), gVNew.flatten(2) }, -1);
        var back = Scan(g.narrow(-1, dk * dv, chunk * dv).view(n, nc, chunk, dv), kt.detach(), w.detach(),
            g.narrow(-1, 0, dk * dv).view(n, nc, dk, dv), d?.detach(), 1f, -1f, reverse: true);
        var actual = DeltaRuleStateFunction.Gradients(packed, back, decayed, dk, dv);
        Assert.Equal(expected.Count, actual.Length);
        string[] names = { "dW", "dU", "dK̃", "dd" };
        for (int i = 0; i < actual.Length; i++)
            Assert.True(actual[i].allclose(expected[i], rtol: 1e-4, atol: 1e-4), $"{names[i]} differs from autograd's gradient of the chunk loop");
    }

    [Fact]
    public void RoutesOnlyCudaTensorsAndNamesWhy()
    {
        using var w = torch.zeros(2, 3, 64, 64);
        Assert.Contains("CUDA", FusedDeltaRuleState.Reason(w, 64));
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { DeltaRuleEnabled = false };
            Assert.Contains(FusedDeltaRuleState.EnableVariable, FusedDeltaRuleState.Reason(w, 64));
        }
        finally { FusedKernelOptions.Current = before; }
    }

    [Fact]
    public void RefusesShapesTheKernelDoesNotTake()
    {
        Assert.Null(FusedDeltaRuleState.ShapeReason(torch.zeros(2, 3, 64, 64), 64));
        Assert.Null(FusedDeltaRuleState.ShapeReason(torch.zeros(1, 1, 128, 128), 200));
        Assert.Contains("chunk 256", FusedDeltaRuleState.ShapeReason(torch.zeros(1, 1, 256, 64), 64));
        Assert.Contains("key dimension 192", FusedDeltaRuleState.ShapeReason(torch.zeros(1, 1, 64, 192), 64));
        Assert.Contains("[N, NC, C, Dk]", FusedDeltaRuleState.ShapeReason(torch.zeros(3, 64, 64), 64));
        Assert.Contains("empty", FusedDeltaRuleState.ShapeReason(torch.zeros(1, 0, 64, 64), 64));
        // The source's layout: A and B [C][Dk + 1], x [C][16], X [Dk][16], fp32.
        Assert.Equal(4 * (2 * 64 * 65 + 64 * 16 + 64 * 16), FusedDeltaRuleState.SharedBytes(64, 64));
    }

    [Fact]
    public void TheCpuKeepsTheChunkLoop()
    {
        // Same inputs, switch on and off: on the CPU both run the loop, so the results are identical.
        torch.manual_seed(9);
        var q = DeltaRule.L2Normalize(torch.randn(2, 2, 70, 16));
        var k = DeltaRule.L2Normalize(torch.randn(2, 2, 70, 16));
        var v = torch.randn(2, 2, 70, 8);
        var beta = torch.sigmoid(torch.randn(2, 2, 70));
        var g = nn.functional.logsigmoid(torch.randn(2, 2, 70));
        var on = DeltaRule.Chunked(q, k, v, beta, g, null);
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { DeltaRuleEnabled = false };
            Assert.True(on.allclose(DeltaRule.Chunked(q, k, v, beta, g, null), rtol: 0, atol: 0));
        }
        finally { FusedKernelOptions.Current = before; }
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The fused rotary kernel on the CPU: the routing (CUDA only; the CPU keeps the libtorch form whatever the switch), its
/// refusals, and the closed form rotary.cu computes — out[i] = in[i]·c[i] + in[p(i)]·s[backward ? p(i) : i] with p the
/// channel pairing — against <see cref="Rotary.Apply"/>'s output and autograd's gradient, to the bit. The kernel itself
/// is checked by tests/FusedKernelEmulator (rotary.cpp) and on a GPU by `bench kernels --verify-fused --only rotary`.
/// </summary>
public class FusedRotaryTests
{
    // The kernel's arithmetic with torch ops: products and the sum in fp32, rounded once to the input's dtype.
    private static Tensor ClosedForm(Tensor input, Tensor cos, Tensor signedSin, bool backward)
    {
        long d = input.shape[3], half = d / 2;
        var pairing = torch.cat(new[] { torch.arange(half, d), torch.arange(0, half) });   // p(i)
        var x = input.to(ScalarType.Float32);
        var sinRows = backward ? signedSin.index_select(1, pairing) : signedSin;
        return (x * cos + x.index_select(3, pairing) * sinRows).to(input.dtype);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void TheKernelsClosedFormIsTheOutputAndTheGradientToTheBit(ScalarType dtype)
    {
        torch.manual_seed(11);
        var x = Heads.Split(torch.randn(2, 19, 3 * 16).to(dtype), 3).detach().requires_grad_();
        var upstream = torch.randn(2, 3, 19, 16).to(dtype);
        var y = Rotary.Apply(x, 10000);
        var dx = torch.autograd.grad(new[] { y }, new[] { x }, new[] { upstream })[0];
        var (cos, signedSin) = Rotary.HalfSplitTables(19, 16, 10000, x.device);
        Assert.True(ClosedForm(x.detach(), cos, signedSin, backward: false).allclose(y, rtol: 0, atol: 0), "forward");
        Assert.True(ClosedForm(upstream, cos, signedSin, backward: true).allclose(dx, rtol: 0, atol: 0), "backward");
    }

    [Fact]
    public void OnTheCpuRotaryKeepsTheLibtorchFormWhateverTheSwitch()
    {
        var x = torch.randn(1, 2, 5, 8);
        var before = FusedKernelOptions.Current;
        try
        {
            FusedKernelOptions.Current = before with { RotaryEnabled = true };
            var on = Rotary.Apply(x);
            FusedKernelOptions.Current = before with { RotaryEnabled = false };
            Assert.True(on.allclose(Rotary.Apply(x), rtol: 0, atol: 0));
        }
        finally { FusedKernelOptions.Current = before; }
        Assert.Contains("CUDA", FusedRotary.UnavailableReason(x));
        Assert.Equal(Environment.GetEnvironmentVariable(FusedRotary.EnableVariable) != "0", new FusedKernelOptions().RotaryEnabled);   // on unless switched off
    }

    [Fact]
    public void TheBackwardWritesDxInTheHeadSplitsLayout()
    {
        // The head split's view keeps time outside heads ([B, T, H, D] memory): dx is written that way, so the split's
        // transpose and view pass it on without a copy. A contiguous [B, H, T, D] input gets a contiguous dx.
        Assert.True(FusedRotary.IsTimeMajor(Heads.Split(torch.zeros(2, 5, 3 * 8), 3)));
        Assert.False(FusedRotary.IsTimeMajor(torch.zeros(2, 3, 5, 8)));
        Assert.False(FusedRotary.IsTimeMajor(Heads.Split(torch.zeros(2, 1, 3 * 8), 3)));   // T = 1: either layout is dense
        Assert.True(FusedRotary.IsTimeMajor(torch.zeros(new long[] { 2, 5, 3, 3, 8 }).select(2, 1).transpose(1, 2)));   // the joint projection's q
    }

    [Fact]
    public void InputsTheKernelDoesNotTakeAreNamed()
    {
        Assert.Contains("Int64 is not fp32, bf16 or fp16", FusedRotary.UnavailableReason(torch.ones(1, 1, 2, 8, dtype: ScalarType.Int64)));
        Assert.Contains("not [B, H, T, D]", FusedRotary.UnavailableReason(torch.ones(2, 8)));
        Assert.Contains("not an even int", FusedRotary.UnavailableReason(torch.ones(1, 1, 2, 7)));
        Assert.Contains("channels are not contiguous", FusedRotary.UnavailableReason(torch.ones(1, 1, 8, 2).transpose(2, 3)));
        Assert.Contains("empty", FusedRotary.UnavailableReason(torch.ones(1, 1, 0, 8)));
        Assert.Equal(1, FusedRotary.RowBlocks(8));
        Assert.Equal(2, FusedRotary.RowBlocks(9));
    }
}

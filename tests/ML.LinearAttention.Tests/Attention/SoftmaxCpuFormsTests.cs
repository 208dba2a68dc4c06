using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// On the CPU softmax attention takes explicit scores up to a length and SDPA's flash kernel beyond it: both forms,
/// on either side of the switch, equal the naive twin in outputs and gradients for every mask form.
/// </summary>
public class SoftmaxCpuFormsTests
{
    public static TheoryData<long, bool, int, ScalarType, bool> Cases()
    {
        var data = new TheoryData<long, bool, int, ScalarType, bool>();
        long shortFp32 = SoftmaxKernels.CpuExplicitScoresMaxLength, shortBf16 = SoftmaxKernels.CpuExplicitScoresMaxLengthLowPrecision;
        foreach (var (t, dtype) in new[] { (shortFp32, ScalarType.Float32), (shortFp32 + 9, ScalarType.Float32), (shortBf16, ScalarType.BFloat16), (shortBf16 + 3, ScalarType.BFloat16) })
        foreach (bool padded in new[] { false, true })
        foreach (var (causal, window) in new[] { (false, 0), (true, 0), (false, 5), (true, 7) })
            data.Add(t, causal, window, dtype, padded);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void BothFormsMatchTheNaiveTwin(long t, bool causal, int window, ScalarType dtype, bool padded)
    {
        Torch.Seed();
        var mask = padded ? KernelAssert.LengthMask(t, t - 11, 1) : null;
        long b = 3;
        var q = KernelAssert.Random(new long[] { b, 2, t, 8 }, dtype);
        var k = KernelAssert.Random(new long[] { b, 2, t, 8 }, dtype);
        var v = KernelAssert.Random(new long[] { b, 2, t, 8 }, dtype);
        bool explicitScores = SoftmaxKernels.UsesExplicitScores(q);
        Assert.Equal(t <= (dtype == ScalarType.Float32 ? SoftmaxKernels.CpuExplicitScoresMaxLength : SoftmaxKernels.CpuExplicitScoresMaxLengthLowPrecision), explicitScores);
        KernelAssert.SameOutputsAndGradients(
            i => SoftmaxKernels.Attention(i[0], i[1], i[2], mask, causal, window),
            i => SoftmaxKernels.AttentionNaive(i[0], i[1], i[2], mask, causal, window),
            new[] { q, k, v }, dtype, $"T={t} {(explicitScores ? "explicit" : "sdpa")} causal={causal} window={window} padded={padded}",
            mask is null ? null : KernelAssert.HeadMask(mask));
    }
}

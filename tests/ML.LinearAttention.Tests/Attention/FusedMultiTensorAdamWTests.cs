using System.Runtime.InteropServices;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The multi-tensor AdamW on the CPU: the routing (the kernel only on CUDA, the per-tensor path elsewhere and for the
/// settings it does not cover), the host table and chunk list the kernel reads, and the kernel's arithmetic — walked over
/// that table here exactly as multi_tensor_adamw.cu does — against TorchSharp's AdamW with the trainer's clipping. The
/// CUDA source is checked by tests/FusedKernelEmulator (multi_tensor_adamw.cpp), compiled by FusedLinearAttentionTests
/// and run on a GPU by `bench kernels --verify-fused`.
/// </summary>
public class FusedMultiTensorAdamWTests
{
    private static List<Parameter> Parameters(params long[] sizes)
        => sizes.Select((n, i) => new Parameter(torch.randn(n) * (i + 1))).ToList();

    private static AdamW Optimizer(List<Parameter> decay, List<Parameter> noDecay, double lr = 1e-2, bool amsgrad = false, double noDecayLr = 1e-2)
        => torch.optim.AdamW(new[]
        {
            new AdamW.ParamGroup(decay, lr: lr, weight_decay: 0.1, amsgrad: amsgrad),
            new AdamW.ParamGroup(noDecay, lr: noDecayLr, weight_decay: 0),
        }, lr: lr);

    [Fact]
    public void OnTheCpuTheTrainerTakesThePerTensorPath()
    {
        var ps = Parameters(5, 7);
        using var optimizer = Optimizer(ps.Take(1).ToList(), ps.Skip(1).ToList());
        foreach (var p in ps) p.grad = torch.randn(p.shape);
        Assert.Contains("CUDA", FusedAdamWStep.UnavailableReason(optimizer, null));
        Assert.False(FusedAdamWStep.TryStep(optimizer, new TrainingSettings(), null));
        Assert.All(optimizer.state_dict().State.Cast<AdamW.State>(), s => Assert.Equal(0, s.step));   // TryStep did nothing
        Assert.Equal(Environment.GetEnvironmentVariable(FusedMultiTensorAdamW.EnableVariable) != "0", new FusedKernelOptions().MultiTensorAdamWEnabled);
    }

    [Fact]
    public void ZeroGradKeepsTheGradientBuffersSoThePlanIsBuiltOnce()
    {
        // The plan's device table holds the gradients' addresses; it is rebuilt (a blocking upload) when they change.
        var ps = Parameters(5, 7);
        using var optimizer = Optimizer(ps.Take(1).ToList(), ps.Skip(1).ToList());
        foreach (var p in ps) p.grad = torch.randn(p.shape);
        var before = ps.Select(p => Microsoft.ML.LinearAttention.Runtime.NativeTensorAccess.DataPointer(p.grad!)).ToList();
        optimizer.zero_grad();
        Assert.All(ps, p => Assert.NotNull(p.grad));
        Assert.Equal(before, ps.Select(p => Microsoft.ML.LinearAttention.Runtime.NativeTensorAccess.DataPointer(p.grad!)).ToList());
        Assert.All(ps, p => Assert.Equal(0f, p.grad!.abs().max().item<float>()));
    }

    [Fact]
    public void SettingsTheKernelDoesNotCoverAreRefusedWithTheReason()
    {
        var ps = Parameters(5, 7);
        foreach (var p in ps) p.grad = torch.randn(p.shape);
        using (var amsgrad = Optimizer(ps.Take(1).ToList(), ps.Skip(1).ToList(), amsgrad: true))
            Assert.Contains("amsgrad", FusedAdamWStep.UnavailableReason(amsgrad, null));
        using (var rates = Optimizer(ps.Take(1).ToList(), ps.Skip(1).ToList(), noDecayLr: 1e-3))
            Assert.Contains("learning rate", FusedAdamWStep.UnavailableReason(rates, null));
        using var steps = Optimizer(ps.Take(1).ToList(), ps.Skip(1).ToList());
        ((AdamW.State)steps.state_dict().State[1]).step = 3;
        Assert.Contains("step counts differ", FusedAdamWStep.UnavailableReason(steps, null));
    }

    [Fact]
    public void TheTableDescribesEachTensorAndTheChunksCoverEveryElementOnce()
    {
        var ps = Parameters(1, FusedMultiTensorAdamW.Chunk, FusedMultiTensorAdamW.Chunk + 1);
        var entries = ps.Select((p, i) => new FusedMultiTensorAdamW.Entry(p, torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p), null, 0.25 * i)).ToList();
        var table = FusedMultiTensorAdamW.Table(entries);
        Assert.Equal(3 * FusedMultiTensorAdamW.Slots, table.Length);
        Assert.Equal(FusedMultiTensorAdamW.Chunk + 1, table[2 * FusedMultiTensorAdamW.Slots + 5]);
        Assert.Equal(0.5f, BitConverter.Int32BitsToSingle((int)table[2 * FusedMultiTensorAdamW.Slots + 6]));
        Assert.Equal(0, table[4]);   // no low-precision copy
        Assert.Equal(new[] { 0, 0, 1, 0, 2, 0, 2, 1 }, FusedMultiTensorAdamW.Chunks(table));
        Assert.Contains("CUDA", FusedMultiTensorAdamW.UnavailableReason(entries));
        var half = entries.Select(e => e with { Grad = e.Grad.to(ScalarType.Float16) }).ToList();
        Assert.NotNull(FusedMultiTensorAdamW.UnavailableReason(half));
    }

    [Theory]
    [InlineData(0.0)]     // no clipping
    [InlineData(0.5)]     // clipping that bites
    [InlineData(1e9)]     // clipping that does not
    public void TheKernelsArithmeticOverTheTableIsTorchSharpsAdamWWithTheTrainersClipping(double maxNorm)
    {
        torch.manual_seed(3);
        var sizes = new long[] { 1, 300, FusedMultiTensorAdamW.Chunk + 37 };
        var naive = Parameters(sizes);
        var twin = naive.Select(p => new Parameter(p.detach().clone())).ToList();
        using var naiveOptimizer = Optimizer(naive.Take(2).ToList(), naive.Skip(2).ToList());
        using var twinOptimizer = Optimizer(twin.Take(2).ToList(), twin.Skip(2).ToList());
        var settings = new TrainingSettings { MaxGradientNorm = maxNorm };
        for (int step = 1; step <= 3; step++)
        {
            foreach (var (a, b) in naive.Zip(twin))
            {
                var g = torch.randn(a.shape) * (step == 2 ? 3.0 : 0.1);
                a.grad = g.clone();
                b.grad = g.clone();
            }
            ModelTrainer.UpdateWeights(naiveOptimizer, naive, settings, null);   // CPU: the per-tensor path
            var states = twinOptimizer.state_dict().State.Cast<AdamW.State>().ToList();
            var entries = twin.Select((p, i) => new FusedMultiTensorAdamW.Entry(p, p.grad!, states[i].exp_avg, states[i].exp_avg_sq, null, i < 2 ? 0.1 : 0)).ToList();
            foreach (var s in states) s.step++;
            KernelOnTheHost(FusedMultiTensorAdamW.Table(entries), 1e-2, 0.9, 0.999, 1e-8, step, maxNorm > 0 ? maxNorm : null);
        }
        foreach (var (a, b) in naive.Zip(twin)) Assert.True(b.allclose(a, rtol: 1e-5, atol: 1e-6), $"{(b - a).abs().max().item<float>()}");
        foreach (var (a, b) in naiveOptimizer.state_dict().State.Cast<AdamW.State>().Zip(twinOptimizer.state_dict().State.Cast<AdamW.State>()))
        {
            Assert.True(b.exp_avg.allclose(a.exp_avg, rtol: 1e-5, atol: 1e-7));
            Assert.True(b.exp_avg_sq.allclose(a.exp_avg_sq, rtol: 1e-5, atol: 1e-9));
        }
    }

    /// <summary>mt_grad_sumsq, mt_grad_sumsq_finish and mt_adamw of multi_tensor_adamw.cu, block by block, through the table's addresses of host tensors.</summary>
    private static void KernelOnTheHost(long[] table, double lr, double beta1, double beta2, double eps, long step, double? maxNorm)
    {
        var chunks = FusedMultiTensorAdamW.Chunks(table);
        int n = chunks.Length / 2, chunk = FusedMultiTensorAdamW.Chunk, slots = FusedMultiTensorAdamW.Slots;
        (long Start, int Count, long[] Row) Block(int c)
        {
            var row = table.AsSpan(chunks[2 * c] * slots, slots).ToArray();
            long start = (long)chunks[2 * c + 1] * chunk;
            return (start, (int)Math.Min(chunk, row[5] - start), row);
        }
        float[] Read(long address, long start, int count)
        {
            var values = new float[count];
            Marshal.Copy(new IntPtr(address + 4 * start), values, 0, count);
            return values;
        }
        void Write(long address, long start, float[] values) => Marshal.Copy(values, 0, new IntPtr(address + 4 * start), values.Length);
        float coef = 1f;
        if (maxNorm is { } limit)
        {
            double total = 0;
            for (int c = 0; c < n; c++)
            {
                var (start, count, row) = Block(c);
                float s = 0f;
                foreach (float g in Read(row[1], start, count)) s = MathF.FusedMultiplyAdd(g, g, s);
                total += s;
            }
            coef = MathF.Min(1f, (float)limit / (MathF.Sqrt((float)total) + 1e-6f));
        }
        float stepSize = (float)(lr / (1 - Math.Pow(beta1, step))), invSqrtBc2 = (float)(1 / Math.Sqrt(1 - Math.Pow(beta2, step)));
        float b1 = (float)beta1, b2 = (float)beta2, omb1 = (float)(1 - beta1), omb2 = (float)(1 - beta2), e = (float)eps;
        for (int c = 0; c < n; c++)
        {
            var (start, count, row) = Block(c);
            float[] p = Read(row[0], start, count), g = Read(row[1], start, count), m = Read(row[2], start, count), v = Read(row[3], start, count);
            float decay = 1f - (float)lr * BitConverter.Int32BitsToSingle((int)row[6]);
            for (int i = 0; i < count; i++)
            {
                float gi = g[i] * coef;
                m[i] = b1 * m[i] + omb1 * gi;
                v[i] = b2 * v[i] + omb2 * gi * gi;
                p[i] = p[i] * decay - stepSize * m[i] / (MathF.Sqrt(v[i]) * invSqrtBc2 + e);
            }
            Write(row[0], start, p); Write(row[2], start, m); Write(row[3], start, v);
        }
    }
}

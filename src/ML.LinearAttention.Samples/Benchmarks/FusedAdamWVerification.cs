using System.Globalization;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The optimizer part of `bench kernels --verify-fused`: the multi-tensor AdamW (<see cref="FusedMultiTensorAdamW"/>,
/// through the trainer's <c>ModelTrainer.UpdateWeights</c>) against its naive twin, the per-tensor path (clipping,
/// TorchSharp's AdamW, the weight copy), on two identical small encoders in bf16 mixed precision: three steps on the same
/// gradients, clipping that bites and clipping that does not, then the fp32 masters, both moments and the bf16 weights
/// compared. On the CPU (no kernel) both sides take the per-tensor path: a smoke test of the command only.
/// </summary>
public static class FusedAdamWVerification
{
    public static void Run(Device device, TextWriter log, ref int cases, ref int failures, ref double worst)
    {
        foreach (double maxNorm in new[] { 0.5, 1e9, 0 })
        {
            string label = maxNorm == 0 ? "no clipping" : maxNorm > 1e6 ? "clipping that does not bite" : "clipping that bites";
            double err;
            string route;
            try { (err, route) = Check(device, maxNorm); }
            catch (Exception e) { log.WriteLine($"multi-tensor adamw ({label}) failed to run: {e.Message}"); (err, route) = (double.NaN, "?"); }
            // fp32 arithmetic in another order (fused multiply-adds, one rounding less): far below bf16's resolution.
            bool pass = err <= 1e-5;   // NaN fails
            cases++;
            if (!pass) failures++;
            if (!double.IsNaN(err)) worst = Math.Max(worst, err);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(pass ? "PASS" : "FAIL")}  multi-tensor adamw ({route}) vs per-tensor, {label}, 3 steps: max err of masters, moments, bf16 weights {err:E2}"));
        }
    }

    private static (double Err, string Route) Check(Device device, double maxNorm)
    {
        var config = new EncoderConfig { VocabularySize = 101, ModelDim = 48, NumLayers = 2, NumHeads = 2, Outputs = 3 };
        var settings = new TrainingSettings { LearningRate = 3e-3, WeightDecay = 0.05, MaxGradientNorm = maxNorm };
        using var naive = new Side(config, device, settings, seed: 5);
        using var fused = new Side(config, device, settings, seed: 5);
        string route = FusedAdamWStep.UnavailableReason(fused.Optimizer, fused.Precision) is null ? "kernel" : "per-tensor on both sides";
        torch.manual_seed(11);
        for (int step = 0; step < 3; step++)
        {
            using var scope = NewDisposeScope();
            foreach (var (a, b) in naive.Masters.Zip(fused.Masters))
            {
                var g = (torch.randn(a.shape) * (step == 1 ? 5.0 : 0.2)).to(device);
                a.grad = g.clone().DetachFromDisposeScope();
                b.grad = g.clone().DetachFromDisposeScope();
            }
            using (FusedKernelVerification.Switch(o => o with { MultiTensorAdamWEnabled = false }))
                ModelTrainer.UpdateWeights(naive.Optimizer, naive.Masters, settings, naive.Precision);
            using (FusedKernelVerification.Switch(o => o with { MultiTensorAdamWEnabled = true }))
                ModelTrainer.UpdateWeights(fused.Optimizer, fused.Masters, settings, fused.Precision);
        }
        double err = 0;
        var naiveStates = naive.Optimizer.state_dict().State.Cast<AdamW.State>().ToList();
        var fusedStates = fused.Optimizer.state_dict().State.Cast<AdamW.State>().ToList();
        using (var scope = NewDisposeScope())
        {
            foreach (var (a, b) in naive.Masters.Zip(fused.Masters)) err = Math.Max(err, FusedKernelVerification.Relative(b, a));
            foreach (var (a, b) in naiveStates.Zip(fusedStates))
            {
                if (a.step != b.step) return (double.PositiveInfinity, route);
                err = Math.Max(err, Math.Max(FusedKernelVerification.Relative(b.exp_avg, a.exp_avg), FusedKernelVerification.Relative(b.exp_avg_sq, a.exp_avg_sq)));
            }
            // The bf16 weights: the fused side's are the kernel's rounding of its master, the naive side's a copy_ of its own.
            foreach (var (a, b) in naive.Precision.Model.parameters().Zip(fused.Precision.Model.parameters()))
                err = Math.Max(err, FusedKernelVerification.Relative(b.to(ScalarType.Float32), a.to(ScalarType.Float32)) > 4e-3 ? double.PositiveInfinity : 0);
        }
        return (err, route);
    }

    /// <summary>One side of the comparison: an fp32 model, its bf16 copy and AdamW over the masters.</summary>
    private sealed class Side : IDisposable
    {
        private readonly SequenceModel _model;

        public Side(EncoderConfig config, Device device, TrainingSettings settings, int seed)
        {
            torch.manual_seed(seed);
            _model = new SequenceModel(config);
            _model.to(device);
            Precision = new MixedPrecision(_model, device);
            Optimizer = ModelTrainer.CreateOptimizer(_model, settings);
            Masters = _model.parameters().Where(p => p.requires_grad).ToList();
        }

        public MixedPrecision Precision { get; }
        public AdamW Optimizer { get; }
        public List<Parameter> Masters { get; }

        public void Dispose()
        {
            Optimizer.Dispose();
            Precision.Dispose();
            _model.Dispose();
        }
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Numeric precision of training.</summary>
public enum TrainingPrecision
{
    /// <summary>bf16 mixed precision on CUDA. On the CPU: bf16 mixed precision for softmax text models with layers at
    /// least 256 wide (MiniLM, BERT) when the processor multiplies bf16 natively (AVX512-BF16 or AMX), where it trains
    /// about 1.7 times as fast with the same accuracy; fp32 otherwise (the default 128-wide model, linear and converted
    /// models, images, older CPUs).</summary>
    Auto,
    /// <summary>fp32 everywhere.</summary>
    Float32,
    /// <summary>bf16 mixed precision on any device. On a CPU with bf16 instructions (AVX512-BF16, AMX) it trains a
    /// MiniLM-sized model about 1.7 times as fast as fp32 (docs/benchmarks/training-cpu.md); without them it is slower.</summary>
    BFloat16,
}

/// <summary>
/// bf16 mixed precision with fp32 master weights (TorchSharp 0.107 has no autocast): a bf16 copy of the model runs
/// forward and backward; its gradients are added into the fp32 master parameters, which the optimizer updates, and the
/// updated weights are copied back into the copy before the next batch. Norm statistics stay fp32 (RmsNorm), and the
/// loss is computed in fp32.
/// </summary>
internal sealed class MixedPrecision : IDisposable
{
    private readonly List<Parameter> _master;
    private readonly List<Parameter> _shadow;

    public MixedPrecision(TrainableModel master, Device device)
    {
        Model = ScoringPrecision.LowPrecisionCopy(master, device, ScalarType.BFloat16);
        _master = master.parameters().ToList();
        _shadow = Model.parameters().ToList();
        for (int i = 0; i < _master.Count; i++) _shadow[i].requires_grad = _master[i].requires_grad; // frozen stays frozen
    }

    /// <summary>Whether <paramref name="precision"/> means bf16 mixed precision for <paramref name="model"/> on this
    /// device (see <see cref="TrainingPrecision.Auto"/>).</summary>
    public static bool Applies(TrainingPrecision precision, bool cuda, TrainableModel model) => precision switch
    {
        TrainingPrecision.BFloat16 => true,
        TrainingPrecision.Float32 => false,
        _ => cuda || (Runtime.CpuFeatures.HasBFloat16Instructions && model.AutoBFloat16OnCpu && HasWideMatrices(model)),
    };

    /// <summary>Whether the model has matrix products of at least 256 × 256 outside its embeddings, where bf16 pays on the
    /// CPU (MiniLM's 384-wide layers do; the default 128-wide text model gains little).</summary>
    internal static bool HasWideMatrices(TrainableModel model) => model.named_parameters().Any(p =>
        p.parameter.dim() == 2 && !p.name.Contains("embedding", StringComparison.Ordinal) && p.parameter.shape[0] >= 256 && p.parameter.shape[1] >= 256);

    /// <summary>The bf16 copy that runs forward and backward.</summary>
    public TrainableModel Model { get; }

    /// <summary>
    /// True when the copy's bf16 gradients are not moved into the master parameters after each backward pass: the fused
    /// CPU AdamW reads them where they are and writes the updated weights back into the copy (<see cref="CpuAdamW"/>).
    /// Set for CPU training with one backward pass per optimizer step; any other optimizer path moves them first.
    /// </summary>
    public bool GradientsStayInCopy { get; set; }

    /// <summary>The copy's parameters, in the masters' order.</summary>
    internal IReadOnlyList<Parameter> Copies => _shadow;

    /// <summary>Adds the copy's gradients (as fp32) into the master parameters and clears the copy's.</summary>
    public void MoveGradients()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        for (int i = 0; i < _master.Count; i++)
        {
            var g = _shadow[i].grad;
            if (g is null) continue;
            var g32 = g.to(ScalarType.Float32);
            var existing = _master[i].grad;
            if (existing is null) _master[i].grad = g32.DetachFromDisposeScope(); // a new fp32 tensor: nothing else holds it
            else existing.add_(g32);
            _shadow[i].grad = null;
        }
    }

    private Dictionary<IntPtr, Parameter>? _copyByMasterData;

    /// <summary>
    /// The bf16 copy of master parameter <paramref name="master"/> (matched by data address: the optimizer's groups may
    /// hold other wrappers of the same parameters), or null when it is not one of the masters.
    /// </summary>
    internal Tensor? LowPrecisionCopy(Tensor master)
    {
        _copyByMasterData ??= Enumerable.Range(0, _master.Count).ToDictionary(i => Runtime.NativeTensorAccess.DataPointer(_master[i]), i => _shadow[i]);
        return _copyByMasterData.GetValueOrDefault(Runtime.NativeTensorAccess.DataPointer(master));
    }

    /// <summary>Copies the updated master weights into the bf16 copy.</summary>
    public void SyncWeights()
    {
        using var _ = no_grad();
        for (int i = 0; i < _master.Count; i++) _shadow[i].copy_(_master[i]);
    }

    public void Dispose() => Model.Dispose();
}

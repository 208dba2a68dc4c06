using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>
/// The common shape of most mixers: q/k/v projections (C → C, no bias unless
/// <see cref="MixerConfig.ProjectionBias"/>), a per-head kernel on [B, H, T, D], and an
/// output projection. Subclasses implement <see cref="MixHeads"/>; they call <c>RegisterComponents()</c> at the end of
/// their own constructor (TorchSharp registers fields once, so a base class must not).
/// <para>The projections are typed as modules (they are <see cref="Linear"/> when built) so that the fine-tuning catalog
/// can swap one for a wrapper, e.g. a LoRA linear; cast to <see cref="Linear"/> only inside a constructor.</para>
/// </summary>
public abstract class ProjectedMixer : TokenMixer
{
    protected readonly nn.Module<Tensor, Tensor> q_proj;
    protected readonly nn.Module<Tensor, Tensor> k_proj;
    protected readonly nn.Module<Tensor, Tensor> v_proj;
    protected readonly nn.Module<Tensor, Tensor> o_proj;

    protected ProjectedMixer(string name, MixerConfig config, bool bias = false) : base(name, config)
    {
        int c = config.ModelDim;
        bias |= config.ProjectionBias;
        q_proj = nn.Linear(c, c, hasBias: bias);
        k_proj = nn.Linear(c, c, hasBias: bias);
        v_proj = nn.Linear(c, c, hasBias: bias);
        o_proj = nn.Linear(c, c, hasBias: bias);
    }

    /// <inheritdoc/>
    public override bool SupportsQueryKeyTransform => true;

    private static readonly string[] Projections = { "q_proj", "k_proj", "v_proj", "o_proj" };

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets => Projections;

    /// <summary>q, k, v: [B, H, T, D]; mask [B, T] bool or null → [B, H, T, D].</summary>
    protected abstract Tensor MixHeads(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask);

    /// <summary>
    /// The q, k and v projections' weights [3C, C] (and biases [3C]) stacked, when all three are plain
    /// <see cref="Linear"/> layers of one shape, dtype and bias setting (not, e.g., LoRA wrappers); else null.
    /// </summary>
    internal (Tensor Weight, Tensor? Bias)? JointProjections()
    {
        if (q_proj is not Linear lq || k_proj is not Linear lk || v_proj is not Linear lv) return null;
        var (wq, wk, wv) = (lq.weight!, lk.weight!, lv.weight!);
        if (!wk.shape.SequenceEqual(wq.shape) || !wv.shape.SequenceEqual(wq.shape) || wk.dtype != wq.dtype || wv.dtype != wq.dtype) return null;
        bool bias = lq.bias is not null;
        if ((lk.bias is not null) != bias || (lv.bias is not null) != bias) return null;
        return (torch.cat(new[] { wq, wk, wv }, 0), bias ? torch.cat(new[] { lq.bias!, lk.bias!, lv.bias! }) : null);
    }

    /// <summary>
    /// q, k, v [B, H, T, D] from one GEMM with the stacked weights (one pass over x instead of three, and one dx GEMM
    /// in the backward instead of three summed): views of the [B, T, 3, H, D] result, whose gradients autograd stacks
    /// back in one pass. With <paramref name="copyValues"/> (q and k go through rotary positions, which write new
    /// tensors) v is copied out contiguous — the layout the attention kernels take — so that a kernel saving v for its
    /// backward holds v alone, not the whole result. Same values as the three projections up to the GEMM's summation
    /// order.
    /// </summary>
    internal static (Tensor q, Tensor k, Tensor v) ProjectJointly(Tensor x, Tensor weight, Tensor? bias, int numHeads, bool copyValues = false)
    {
        long b = x.shape[0], t = x.shape[1], c = weight.shape[0] / 3;
        var parts = nn.functional.linear(x, weight, bias).view(b, t, 3, numHeads, c / numHeads).unbind(2);
        var v = parts[2].transpose(1, 2);
        return (parts[0].transpose(1, 2), parts[1].transpose(1, 2), copyValues ? v.contiguous() : v);
    }

    /// <summary>The per-head kernel alone on [B, H, T, D] inputs (the step profile times the mixer's parts one by one).</summary>
    internal Tensor MixHeadsAlone(Tensor q, Tensor k, Tensor v) => MixHeads(q, k, v, null);

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        using var scope = NewDisposeScope();
        int h = Config.NumHeads;
        var (q, k, v) = x.device_type == DeviceType.CUDA && JointProjections() is { } joint
            ? ProjectJointly(x, joint.Weight, joint.Bias, h, copyValues: QueryKeyTransform is not null)
            : (Heads.Split(q_proj.forward(x), h), Heads.Split(k_proj.forward(x), h), Heads.Split(v_proj.forward(x), h));
        if (QueryKeyTransform is { } qk) { q = qk(q); k = qk(k); }
        var o = Heads.Merge(MixHeads(q, k, v, keyPaddingMask));
        return Heads.ZeroPadded(o_proj.forward(o), keyPaddingMask).MoveToOuterDisposeScope();
    }
}

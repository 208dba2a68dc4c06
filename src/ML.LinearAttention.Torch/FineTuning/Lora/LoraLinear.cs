using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.Lora;

/// <summary>
/// A linear layer with a LoRA update: y = x·Wᵀ + b + (α/r)·(dropout(x)·Aᵀ)·Bᵀ. W and b are the wrapped layer's own
/// parameters (frozen; state names unchanged: <c>weight</c>, <c>bias</c>), A [r, in] and B [out, r] are new
/// (<c>lora_A</c>, <c>lora_B</c>). Shapes: x [..., in] → [..., out].
/// </summary>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly Parameter lora_A;
    private readonly Parameter lora_B;
    private readonly FastDropout? lora_dropout;

    /// <summary>Wraps <paramref name="baseLayer"/> (its parameters are taken over, not copied).</summary>
    public LoraLinear(Linear baseLayer, int rank, double alpha, double dropout = 0) : base(nameof(LoraLinear))
    {
        ArgumentNullException.ThrowIfNull(baseLayer);
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, "LoRA rank must be at least 1.");
        if (!(alpha > 0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "LoRA alpha must be positive.");
        weight = baseLayer.weight;
        bias = baseLayer.bias;
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        Rank = rank;
        Scale = alpha / rank;
        using (no_grad())
        {
            lora_A = new Parameter(empty(rank, inFeatures, dtype: weight.dtype, device: weight.device));
            nn.init.kaiming_uniform_(lora_A, a: Math.Sqrt(5)); // PEFT's init of A; B = 0 keeps the layer unchanged at the start
            lora_B = new Parameter(zeros(outFeatures, rank, dtype: weight.dtype, device: weight.device));
        }
        if (dropout > 0) lora_dropout = new FastDropout(dropout);
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;
        RegisterComponents();
    }

    /// <summary>r.</summary>
    public int Rank { get; }
    /// <summary>α / r.</summary>
    public double Scale { get; }
    /// <summary>True while B·A is folded into W (the adapter path is then skipped).</summary>
    public bool Merged { get; private set; }
    /// <summary>The frozen base weight W [out, in].</summary>
    public Parameter BaseWeight => weight;
    /// <summary>The base bias [out], or null.</summary>
    public Parameter? BaseBias => bias;
    /// <summary>A [r, in].</summary>
    public Parameter LoraA => lora_A;
    /// <summary>B [out, r].</summary>
    public Parameter LoraB => lora_B;

    public override Tensor forward(Tensor x)
    {
        if (Merged) return nn.functional.linear(x, weight, bias);
        using var scope = NewDisposeScope();
        var h = lora_dropout is null ? x : lora_dropout.forward(x);
        var update = nn.functional.linear(nn.functional.linear(h, lora_A), lora_B);
        return (nn.functional.linear(x, weight, bias) + update * Scale).MoveToOuterDisposeScope();
    }

    /// <summary>The update (α/r)·B·A [out, in], detached.</summary>
    public Tensor DeltaWeight()
    {
        using var _ = no_grad();
        return (lora_B.matmul(lora_A) * Scale).detach();
    }

    /// <summary>Folds the update into W (in place); the forward pass then costs what the plain layer costs.</summary>
    public void Merge()
    {
        if (Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        weight.add_(delta.to(weight.dtype));
        Merged = true;
    }

    /// <summary>Takes the update back out of W.</summary>
    public void Unmerge()
    {
        if (!Merged) return;
        using var _ = no_grad();
        using var delta = DeltaWeight();
        weight.sub_(delta.to(weight.dtype));
        Merged = false;
    }

    /// <summary>A plain linear layer with the update folded in (W + (α/r)·B·A, b); this wrapper's adapters are released.</summary>
    public Linear ToMergedLinear()
    {
        Merge();
        var linear = nn.Linear(weight, bias);
        lora_A.Dispose();
        lora_B.Dispose();
        return linear;
    }
}

using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

namespace Microsoft.ML.LinearAttention.Attention.Hedgehog;

/// <summary>
/// Hedgehog's learnable feature map (Zhang et al., ICLR 2024; LoLCATs' untied per-head form):
/// φ(x) = [softmax(x W_h), softmax(−x W_h)] over the feature dimension, per head h.
/// Shapes: x [B, H, T, D] → [B, H, T, 2F]. W is [H, D, F], initialised to the identity when F = D (fla) and with
/// Kaiming-uniform otherwise (LoLCATs).
/// </summary>
public sealed class HedgehogFeatureMap : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public HedgehogFeatureMap(int numHeads, int headDim, int featureDim) : base(nameof(HedgehogFeatureMap))
    {
        if (featureDim <= 0) throw new ArgumentOutOfRangeException(nameof(featureDim), featureDim, "Hedgehog FeatureDim must be positive.");
        var w = featureDim == headDim
            ? torch.eye(headDim).unsqueeze(0).repeat(numHeads, 1, 1)
            : torch.empty(numHeads, headDim, featureDim);
        if (featureDim != headDim)
            using (torch.no_grad()) nn.init.kaiming_uniform_(w, a: Math.Sqrt(5));
        weight = new Parameter(w);
        RegisterComponents();
    }

    /// <summary>The [H, D, F] projection.</summary>
    public Parameter Weight => weight;

    public override Tensor forward(Tensor x) => Map(x, weight);

    /// <summary>
    /// The pure kernel: x [B, H, T, D], w [H, D, F] → [B, H, T, 2F], as <see cref="FusedHedgehogProjection"/>: on CUDA,
    /// for bf16/fp16 with D and F multiples of 16 up to 128, one kernel each way for the projection and both softmaxes;
    /// elsewhere y = xW as a libtorch matmul and the softmaxes as <see cref="FusedHedgehogMap"/> (one softmax over a
    /// stacked [.., 2, F] view, or on CUDA one kernel each way).
    /// </summary>
    public static Tensor Map(Tensor x, Tensor w) => FusedHedgehogProjection.Apply(x, w);

    /// <summary>
    /// Naive twin of <see cref="Map"/>, for tests: a readable per-head loop in fp32. For each head h,
    /// y = x[:, h] W_h; φ+ = exp(y − max y) / Σ exp(y − max y) and φ− likewise for −y, both over the feature
    /// dimension; the result is [φ+, φ−] concatenated on the last dimension.
    /// Shapes: x [B, H, T, D], w [H, D, F] → [B, H, T, 2F], returned in x's dtype.
    /// </summary>
    internal static Tensor MapNaive(Tensor x, Tensor w)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var wf = w.to(ScalarType.Float32);
        long heads = x.shape[1];
        var perHead = new Tensor[heads];
        for (long h = 0; h < heads; h++)
        {
            var y = xf.select(1, h).matmul(wf[h]);                                  // [B, T, D] @ [D, F] → [B, T, F]
            perHead[h] = torch.cat(new[] { Softmax(y), Softmax(-y) }, -1);          // [B, T, 2F]
        }
        return torch.stack(perHead, 1).to(x.dtype).MoveToOuterDisposeScope();      // [B, H, T, 2F]

        // exp(y − max y) / Σ exp(y − max y) over the last dimension; the max is only a shift (softmax is invariant to
        // it), so it is detached.
        static Tensor Softmax(Tensor y)
        {
            var e = (y - y.amax(new long[] { -1 }, keepdim: true).detach()).exp();
            return e / e.sum(-1, keepdim: true);
        }
    }
}

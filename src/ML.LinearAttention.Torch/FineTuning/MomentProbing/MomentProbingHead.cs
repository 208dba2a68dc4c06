using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

/// <summary>
/// The Moment Probing head (reference <c>Moment_Probing_ViT</c>): logits = (classifier1(first order) +
/// classifier2(MHC³(tokens))) / 2.
/// <list type="bullet">
/// <item>First order: the pooled vector (CLS token, or the mean over real tokens with a LayerNorm first, as timm's
/// <c>fc_norm</c> for average pooling) → Linear(C → K).</item>
/// <item>Second order (MHC³): real tokens (position 0 left out under CLS pooling, as the reference leaves the CLS token
/// out) → Linear(C → HiddenDim) → Heads heads of d with one shared LayerNorm(d) → masked cross-covariance of the head
/// pairs [P, d, d], columns L2-normalized (<see cref="MomentProbingKernels"/>) → Conv2d(P, P, 3, stride 2) → GELU →
/// Conv2d(P, P, 3, stride 2) (no bias) → flatten (<see cref="MomentProbingOptions.FeatureCount"/>, 2,883 at the
/// defaults) → LayerNorm (<see cref="MomentProbingOptions.NormalizeSecondOrder"/>) → Linear(→ K).</item>
/// </list>
/// Shapes: states [B, T, C], mask [B, T], pooled [B, C] → [B, K]. Padding changes nothing.
/// </summary>
public sealed class MomentProbingHead : SequenceHead, IProbeFirstHead
{
    private readonly LayerNorm? fc_norm;
    private readonly Linear classifier1;
    private readonly Linear proj;
    private readonly LayerNorm ln;
    private readonly Conv2d conv1;
    private readonly Conv2d conv2;
    private readonly LayerNorm? fc_norm2;
    private readonly Linear classifier2;
    private readonly MomentProbingOptions _options;
    private readonly IReadOnlyList<(int First, int Second)> _pairs;
    private readonly bool _skipFirstToken;

    /// <param name="modelDim">C.</param>
    /// <param name="outputs">K.</param>
    /// <param name="pooling">The encoder's pooling: CLS uses token 0 as the first-order input and leaves it out of the second order.</param>
    /// <param name="options">Sizes (null = reference defaults).</param>
    public MomentProbingHead(int modelDim, int outputs, Pooling pooling, MomentProbingOptions? options = null) : base(nameof(MomentProbingHead))
    {
        _options = options ?? new MomentProbingOptions();
        _options.Validate();
        _pairs = _options.HeadPairs();
        _skipFirstToken = pooling == Pooling.Cls;
        int p = _pairs.Count;
        if (pooling == Pooling.Mean) fc_norm = nn.LayerNorm(modelDim);
        classifier1 = nn.Linear(modelDim, outputs);
        proj = nn.Linear(modelDim, _options.HiddenDim);
        ln = nn.LayerNorm(_options.HeadDim);
        conv1 = nn.Conv2d(p, p, 3, stride: 2, bias: false);
        conv2 = nn.Conv2d(p, p, 3, stride: 2, bias: false);
        // Null (a model saved before the option existed) keeps the layout it was trained with: no norm.
        if (_options.NormalizeSecondOrder == true) fc_norm2 = nn.LayerNorm(_options.FeatureCount);
        classifier2 = nn.Linear(_options.FeatureCount, outputs);
        RegisterComponents();
    }

    /// <summary>Length of the second-order feature vector.</summary>
    public int FeatureCount => _options.FeatureCount;

    /// <summary>The head's options and whether it skips the first ([CLS]) token (the ONNX export mirrors them).</summary>
    internal (MomentProbingOptions Options, bool SkipFirstToken) Settings => (_options, _skipFirstToken);

    public override Tensor forward(Tensor states, Tensor mask, Tensor pooled)
    {
        using var scope = NewDisposeScope();
        var first = classifier1.forward(fc_norm is null ? pooled : fc_norm.forward(pooled));
        var features = SecondOrderFeatures(states, mask);
        var second = classifier2.forward(fc_norm2 is null ? features : fc_norm2.forward(features));
        return ((first + second) / 2).MoveToOuterDisposeScope();
    }

    IReadOnlyCollection<string> IProbeFirstHead.FirstOrderParameterNames =>
        fc_norm is null ? new[] { "classifier1.weight", "classifier1.bias" } : new[] { "fc_norm.weight", "fc_norm.bias", "classifier1.weight", "classifier1.bias" };

    void IProbeFirstHead.SilenceSecondOrder()
    {
        using var _ = no_grad();
        classifier2.weight!.zero_();
        classifier2.bias?.zero_();
    }

    Tensor IProbeFirstHead.FirstOrderOutput(Tensor states, Tensor mask, Tensor pooled)
        => classifier1.forward(fc_norm is null ? pooled : fc_norm.forward(pooled));

    void IProbeFirstHead.AdoptFirstOrder()
    {
        // forward = (classifier1 + classifier2) / 2 with classifier2 silent: twice the probe's weights give its logits.
        using var _ = no_grad();
        classifier1.weight!.mul_(2);
        classifier1.bias?.mul_(2);
    }

    /// <summary>The flattened MHC³ features [B, FeatureCount].</summary>
    public Tensor SecondOrderFeatures(Tensor states, Tensor mask)
    {
        using var scope = NewDisposeScope();
        if (_skipFirstToken)
        {
            mask = mask.clone();
            mask[TensorIndex.Colon, 0] = tensor(false);
        }
        long b = states.shape[0], t = states.shape[1];
        int h = _options.Heads, d = _options.HeadDim;
        var x = ln.forward(proj.forward(states).view(b, t, h, d)).permute(0, 2, 1, 3); // [B, H, T, d]
        var cov = MomentProbingKernels.CrossCovariance(x, mask, _pairs, _options.Centering).to(states.dtype);
        var maps = conv2.forward(nn.functional.gelu(conv1.forward(cov)));
        return maps.reshape(b, -1).MoveToOuterDisposeScope();
    }
}

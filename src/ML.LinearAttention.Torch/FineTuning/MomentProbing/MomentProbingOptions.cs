namespace Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

/// <summary>Which head pairs the MHC³ cross-covariances are taken between (reference <c>cross_type</c>).</summary>
public enum CrossPairs
{
    /// <summary>Neighbouring heads (i, i+1): H − 1 maps (reference 'near', the default).</summary>
    Near,
    /// <summary>Head i with head i + H/2: H/2 maps (reference 'n/2'; H even).</summary>
    Half,
    /// <summary>All pairs i &lt; j: H(H − 1)/2 maps (reference 'cn2').</summary>
    All,
}

/// <summary>How token features are centred before the cross-covariance.</summary>
public enum CovarianceCentering
{
    /// <summary>
    /// One mean per row and head over all real tokens and channels (what the reference code computes:
    /// <c>adaptive_avg_pool2d(x, (1, 1))</c> on [B, d, N]); the default.
    /// </summary>
    Global,
    /// <summary>A mean per channel over the real tokens (the textbook covariance the paper's text describes).</summary>
    PerChannel,
}

/// <summary>
/// Options of Moment Probing (Gao et al., ICCV 2023; reference <c>mingzeG/Moment-Probing</c>, <c>Moment_Probing_ViT</c>
/// defaults): a first-order linear classifier on the pooled token plus a second-order MHC³ branch: project tokens to
/// <see cref="HiddenDim"/>, split into <see cref="Heads"/> heads with a shared LayerNorm, cross-covariances of head pairs
/// over the real tokens, column-wise L2 normalization, two stride-2 3×3 convolutions (GELU between, no bias), a linear
/// classifier on the flattened maps (after a LayerNorm of its own, <see cref="NormalizeSecondOrder"/>); the two logits
/// are averaged. The head trains on cached features of the frozen encoder with the recipe of
/// <see cref="FrozenHeadOptions"/> (under MP+ the encoder changes, so MP+ streams with the estimator's schedule).
/// </summary>
public sealed record MomentProbingOptions : FrozenHeadOptions
{
    /// <summary>Width of the token projection (reference: 512).</summary>
    public int HiddenDim { get; init; } = 512;
    /// <summary>Heads the projection is split into (reference: 4, so heads of 128).</summary>
    public int Heads { get; init; } = 4;
    /// <summary>Head pairs (reference: neighbouring heads).</summary>
    public CrossPairs Pairs { get; init; } = CrossPairs.Near;
    /// <summary>Centering before the covariance (reference code: one global mean).</summary>
    public CovarianceCentering Centering { get; init; } = CovarianceCentering.Global;

    /// <summary>
    /// A LayerNorm on the flattened second-order features before their classifier, as the first order has its own
    /// (mean pooling): the column-normalized covariance maps are small and their scale drifts with the projection, so
    /// without it the second-order logits learn far more slowly than the first-order ones. Null = true for a model
    /// set up now; models saved before this option existed record no value and are rebuilt without the norm.
    /// </summary>
    public bool? NormalizeSecondOrder { get; init; }

    /// <summary>Size d of one head.</summary>
    public int HeadDim => HiddenDim / Heads;

    /// <summary>The (i, j) head pairs of <see cref="Pairs"/>.</summary>
    public IReadOnlyList<(int First, int Second)> HeadPairs() => Pairs switch
    {
        CrossPairs.Near => Enumerable.Range(0, Heads - 1).Select(i => (i, i + 1)).ToList(),
        CrossPairs.Half => Enumerable.Range(0, Heads / 2).Select(i => (i, i + Heads / 2)).ToList(),
        _ => (from i in Enumerable.Range(0, Heads) from j in Enumerable.Range(i + 1, Heads - i - 1) select (i, j)).ToList(),
    };

    /// <summary>Side of the map after one valid 3×3 convolution with stride 2: ⌊(n − 3)/2⌋ + 1.</summary>
    public static int ConvOut(int n) => (n - 3) / 2 + 1;

    /// <summary>
    /// Second-order features: pairs × s², s = ConvOut(ConvOut(d)). Reference defaults: 3 × 31² = 2,883
    /// (d = 128 → 63 → 31).
    /// </summary>
    public int FeatureCount => HeadPairs().Count * ConvOut(ConvOut(HeadDim)) * ConvOut(ConvOut(HeadDim));

    /// <summary>Throws a clear error for an inconsistent setting.</summary>
    public void Validate()
    {
        ValidateRecipe();
        if (Heads < 2) throw new ArgumentOutOfRangeException(nameof(Heads), Heads, "Moment Probing needs at least 2 heads to form cross-covariances (reference: 4).");
        if (HiddenDim <= 0 || HiddenDim % Heads != 0)
            throw new ArgumentException($"Moment Probing HiddenDim {HiddenDim} must be a positive multiple of Heads {Heads} (reference: 512 and 4).");
        if (HeadDim < 7)
            throw new ArgumentException($"Moment Probing heads of {HeadDim} channels are too small for two stride-2 3×3 convolutions; HiddenDim / Heads must be at least 7 (reference: 128).");
        if (Pairs == CrossPairs.Half && Heads % 2 != 0)
            throw new ArgumentException($"CrossPairs.Half needs an even number of heads, not {Heads}.");
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>What turns pixels into the first token grid.</summary>
public enum VisionBackbone
{
    /// <summary>A ViT-style patch embedding (one strided convolution, or a stack of 3×3 convolutions with <c>ConvStem</c>), trained from scratch.</summary>
    PatchEncoder,
    /// <summary>A pretrained convolutional stem imported from ONNX (ResNet18 of Microsoft.ML.DnnImageFeaturizer.ResNet18), frozen or fine-tuned.</summary>
    PretrainedStem,
}

/// <summary>Where patch positions come from.</summary>
public enum VisionPosition
{
    /// <summary>A depthwise 3×3 convolution added before every block (conditional position encoding, as MALA's and the CPVT/Twins classifiers); works at any resolution.</summary>
    Convolution,
    /// <summary>A learned table for the first grid, added once after the stem.</summary>
    Learned,
    /// <summary>None beyond what the mechanisms bring (LePE, 2D RoPE, local windows).</summary>
    None,
}

/// <summary>The classifier on top of the final tokens.</summary>
public enum VisionHead
{
    /// <summary>Mean over tokens → linear layer.</summary>
    Linear,
    /// <summary>Moment Probing (ICCV 2023): (linear(first order) + linear(cross-covariance features of the tokens)) / 2, the
    /// library's <see cref="MomentProbingHead"/>; strongest on top of a frozen pretrained stem.</summary>
    MomentProbing,
}

/// <summary>One stage of the token encoder: blocks at one resolution; every stage after the first halves the grid.</summary>
/// <param name="Depth">Blocks in the stage.</param>
/// <param name="Dimension">Hidden size of the stage.</param>
/// <param name="Heads">Attention heads of the stage (must divide <paramref name="Dimension"/>).</param>
public sealed record VisionStage(int Depth, int Dimension, int Heads);

/// <summary>
/// Every size and choice of a <see cref="VisionModel"/>; saved as JSON next to the weights so that a model rebuilds
/// itself exactly (the pretrained stem's structure included; its weights are in the state).
/// </summary>
public sealed record VisionConfig
{
    /// <summary>Input width in pixels (every image is resized to it).</summary>
    public int ImageWidth { get; init; } = 224;
    /// <summary>Input height in pixels.</summary>
    public int ImageHeight { get; init; } = 224;
    /// <summary>Per-channel mean of the RGB input in [0, 1] (patch encoder; ImageNet's by default).</summary>
    public float[] Mean { get; init; } = { 0.485f, 0.456f, 0.406f };
    /// <summary>Per-channel standard deviation of the RGB input in [0, 1].</summary>
    public float[] Std { get; init; } = { 0.229f, 0.224f, 0.225f };
    /// <summary>Random resized crop + flip during training (never at inference).</summary>
    public bool Augment { get; init; } = true;
    /// <summary>Smallest crop area as a fraction of the image (RandomResizedCrop's scale lower bound).</summary>
    public double MinCropScale { get; init; } = 0.35;
    /// <summary>Random horizontal flips during training.</summary>
    public bool HorizontalFlip { get; init; } = true;

    /// <summary>Backbone kind.</summary>
    public VisionBackbone Backbone { get; init; } = VisionBackbone.PatchEncoder;
    /// <summary>Patch side in pixels (patch encoder).</summary>
    public int PatchSize { get; init; } = 16;
    /// <summary>Replace the single patchifying convolution by log2(PatchSize) 3×3 stride-2 convolutions ("early convolutions").</summary>
    public bool ConvStem { get; init; }
    /// <summary>Structure of the pretrained stem (PretrainedStem only).</summary>
    public ConvGraphSpec? Stem { get; init; }
    /// <summary>Stem expects BGR channels.</summary>
    public bool StemBgr { get; init; }
    /// <summary>Height and width of the stem's mean image (0 = none).</summary>
    public int StemMeanHeight { get; init; }
    /// <summary>Width of the stem's mean image.</summary>
    public int StemMeanWidth { get; init; }
    /// <summary>Keep the pretrained stem's weights fixed (they get no gradient).</summary>
    public bool FreezeStem { get; init; } = true;

    /// <summary>Token stages (at least one).</summary>
    public List<VisionStage> Stages { get; init; } = new() { new VisionStage(4, 128, 4) };
    /// <summary>Registry name of the mixer of every block (unless <see cref="Layers"/> is given).</summary>
    public string Mixer { get; init; } = "mala";
    /// <summary>Options of <see cref="Mixer"/> as registry JSON (null = defaults).</summary>
    public string? MixerOptionsJson { get; init; }
    /// <summary>One mixer per block over all stages (a hybrid layout), or null.</summary>
    public List<EncoderConfig.LayerSpec>? Layers { get; init; }
    /// <summary>FFN hidden size as a multiple of the stage's hidden size.</summary>
    public double FfnMultiplier { get; init; } = 4;
    /// <summary>Dropout on the residual branches and before the classifier.</summary>
    public double Dropout { get; init; }
    /// <summary>Position scheme.</summary>
    public VisionPosition Position { get; init; } = VisionPosition.Convolution;
    /// <summary>Number of classes.</summary>
    public int Outputs { get; init; } = 2;
    /// <summary>Classifier kind.</summary>
    public VisionHead Head { get; init; } = VisionHead.Linear;
    /// <summary>Sizes of the Moment Probing head (null = its reference defaults: 512 hidden, 4 heads, neighbouring pairs).</summary>
    public MomentProbingOptions? MomentProbing { get; init; }

    /// <summary>Total number of blocks.</summary>
    public int NumLayers => Stages.Sum(s => s.Depth);

    /// <summary>Pixels per token side at the first stage.</summary>
    public int FirstStride => Backbone == VisionBackbone.PretrainedStem ? Stem?.TotalStride ?? 32 : PatchSize;

    /// <summary>Token grid (height, width) of each stage for this input size.</summary>
    public IReadOnlyList<(int Height, int Width)> Grids()
    {
        var grids = new List<(int, int)>();
        int s = FirstStride;
        int h = Backbone == VisionBackbone.PretrainedStem ? (ImageHeight + s - 1) / s : ImageHeight / s;
        int w = Backbone == VisionBackbone.PretrainedStem ? (ImageWidth + s - 1) / s : ImageWidth / s;
        foreach (var _ in Stages)
        {
            grids.Add((h, w));
            (h, w) = ((h + 1) / 2, (w + 1) / 2);
        }
        return grids;
    }

    /// <summary>(name, options) of block <paramref name="layer"/> (0-based over all stages).</summary>
    public (string Name, MixerOptions Options) MixerFor(int layer)
    {
        if (Layers is { Count: > 0 })
        {
            var spec = Layers[layer];
            return (spec.Name, spec.OptionsJson is null ? MixerRegistry.DefaultOptions(spec.Name) : MixerRegistry.DeserializeOptions(spec.Name, spec.OptionsJson));
        }
        return (Mixer, MixerOptionsJson is null ? MixerRegistry.DefaultOptions(Mixer) : MixerRegistry.DeserializeOptions(Mixer, MixerOptionsJson));
    }

    /// <summary>Throws a clear error for any inconsistent setting.</summary>
    public void Validate()
    {
        if (ImageWidth < 8 || ImageHeight < 8 || ImageWidth > 8192 || ImageHeight > 8192)
            throw new ArgumentOutOfRangeException(nameof(ImageWidth), $"Image size {ImageWidth}×{ImageHeight} must lie in 8..8192 pixels per side.");
        if (Mean.Length != 3 || Std.Length != 3 || Std.Any(s => s <= 0))
            throw new ArgumentException("Mean and Std need three values (R, G, B), with positive standard deviations.");
        if (MinCropScale is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(MinCropScale), MinCropScale, "MinCropScale must lie in (0, 1].");
        if (Stages.Count == 0) throw new ArgumentException("The encoder needs at least one stage.");
        foreach (var (s, i) in Stages.Select((s, i) => (s, i)))
        {
            if (s.Depth < 0) throw new ArgumentOutOfRangeException(nameof(Stages), $"Stage {i} has depth {s.Depth}; use 0 or more blocks.");
            if (s.Dimension <= 0 || s.Heads <= 0 || s.Dimension % s.Heads != 0)
                throw new ArgumentException($"Stage {i}: hidden size {s.Dimension} must be a positive multiple of its {s.Heads} heads.");
        }
        if (FfnMultiplier <= 0) throw new ArgumentOutOfRangeException(nameof(FfnMultiplier), FfnMultiplier, "FfnMultiplier must be positive.");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "Dropout must lie in [0, 1).");
        if (Outputs < 2) throw new ArgumentOutOfRangeException(nameof(Outputs), Outputs, "Classification needs at least 2 classes.");
        if (Head == VisionHead.MomentProbing) (MomentProbing ?? new MomentProbingOptions()).Validate();
        if (Backbone == VisionBackbone.PatchEncoder)
        {
            if (PatchSize < 1) throw new ArgumentOutOfRangeException(nameof(PatchSize), PatchSize, "PatchSize must be at least 1.");
            if (ImageWidth % PatchSize != 0 || ImageHeight % PatchSize != 0)
                throw new ArgumentException($"The image size {ImageWidth}×{ImageHeight} must be a multiple of PatchSize {PatchSize} (e.g. 224 with 16 → 14×14 patches).");
            if (ConvStem && (PatchSize < 2 || (PatchSize & (PatchSize - 1)) != 0))
                throw new ArgumentException($"ConvStem builds the patch size from stride-2 convolutions, so PatchSize must be a power of two ≥ 2; got {PatchSize}.");
        }
        else if (Stem is null) throw new ArgumentException("A pretrained-stem backbone needs its stem structure (Stem).");
        else Stem.Validate();
        if (Layers is { Count: > 0 } && Layers.Count != NumLayers)
            throw new ArgumentException($"The per-layer mixer plan lists {Layers.Count} layers but the stages hold {NumLayers} blocks.");
        if (NumLayers > 0)
            foreach (var name in Layers is { Count: > 0 } ? Layers.Select(l => l.Name) : new[] { Mixer }) MixerRegistry.Get(name);
        var last = Grids()[^1];
        if (last.Height < 1 || last.Width < 1)
            throw new ArgumentException($"The image {ImageWidth}×{ImageHeight} is too small for a first stride of {FirstStride} and {Stages.Count} stage(s).");
    }

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>JSON form (stored in saved models).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads <see cref="ToJson"/>.</summary>
    public static VisionConfig FromJson(string json)
        => JsonSerializer.Deserialize<VisionConfig>(json, Json) ?? throw new InvalidDataException("The model's vision configuration is empty.");
}

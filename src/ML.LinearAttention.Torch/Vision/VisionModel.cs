using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.VisionKit;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>
/// The network of the image classifier: pixels (RGB bytes) → training-time augmentation → a patch embedding
/// (strided convolution or a stack of 3×3 convolutions) or a pretrained convolutional stem → a token grid → stages of
/// pre-norm <see cref="EncoderBlock"/>s whose mixers come from the registry and see the grid
/// (<see cref="TokenMixer.Grid"/>), with a depthwise-convolution position term before each block, a strided
/// convolution between stages → RMSNorm → mean over tokens → linear classifier.
/// </summary>
public sealed class VisionModel : TrainableModel
{
    private readonly Conv2d? patch_embed;
    private readonly ModuleList<Conv2d>? conv_stem;
    private readonly ConvGraph? stem;
    private readonly Linear? stem_proj;
    private readonly RmsNorm embed_norm;
    private readonly Parameter? pos_embedding;
    private readonly ModuleList<Conv2d> downsample;
    private readonly ModuleList<RmsNorm> downsample_norm;
    private readonly ModuleList<EncoderBlock> blocks;
    private readonly ModuleList<DepthwiseConv> cpe;
    private readonly RmsNorm final_norm;
    private readonly Linear? head;
    private readonly MomentProbingHead? mp_head;
    private readonly FastDropout drop;
    private readonly int[] _stageOfBlock;

    public VisionModel(VisionConfig config) : base(nameof(VisionModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var stages = config.Stages;
        int c0 = stages[0].Dimension;
        var grids = config.Grids();
        if (config.Backbone == VisionBackbone.PatchEncoder)
        {
            if (config.ConvStem)
            {
                int n = (int)Math.Round(Math.Log2(config.PatchSize));
                var convs = new List<Conv2d>();
                long inC = 3;
                for (int i = 0; i < n; i++)
                {
                    long outC = i == n - 1 ? c0 : Math.Max(8, c0 >> (n - 1 - i));
                    convs.Add(nn.Conv2d(inC, outC, 3, stride: 2, padding: 1));
                    inC = outC;
                }
                conv_stem = new ModuleList<Conv2d>(convs.ToArray());
            }
            else patch_embed = nn.Conv2d(3, c0, config.PatchSize, stride: config.PatchSize);
        }
        else
        {
            stem = new ConvGraph(config.Stem!, config.StemBgr, config.StemMeanHeight, config.StemMeanWidth);
            stem_proj = nn.Linear(config.Stem!.OutputChannels, c0);
            if (config.FreezeStem) foreach (var p in stem.parameters()) p.requires_grad = false;
        }
        embed_norm = new RmsNorm(c0);
        if (config.Position == VisionPosition.Learned)
            pos_embedding = new Parameter(torch.randn(1, (long)grids[0].Height * grids[0].Width, c0) * 0.02);

        var down = new List<Conv2d>();
        var downNorm = new List<RmsNorm>();
        var list = new List<EncoderBlock>();
        var cpes = new List<DepthwiseConv>();
        var stageOf = new List<int>();
        int layer = 0, total = config.NumLayers;
        for (int s = 0; s < stages.Count; s++)
        {
            var st = stages[s];
            if (s > 0)
            {
                down.Add(nn.Conv2d(stages[s - 1].Dimension, st.Dimension, 3, stride: 2, padding: 1));
                downNorm.Add(new RmsNorm(st.Dimension));
            }
            for (int i = 0; i < st.Depth; i++, layer++)
            {
                var (name, options) = config.MixerFor(layer);
                var mixer = MixerRegistry.Create(name, new MixerConfig(st.Dimension, st.Heads, Causal: false, LayerIndex: layer, NumLayers: total), options);
                mixer.Grid = grids[s];
                list.Add(new EncoderBlock(mixer, st.Dimension, config.FfnMultiplier, config.Dropout));
                if (config.Position == VisionPosition.Convolution) cpes.Add(new DepthwiseConv(st.Dimension, 3));
                stageOf.Add(s);
            }
        }
        downsample = new ModuleList<Conv2d>(down.ToArray());
        downsample_norm = new ModuleList<RmsNorm>(downNorm.ToArray());
        blocks = new ModuleList<EncoderBlock>(list.ToArray());
        cpe = new ModuleList<DepthwiseConv>(cpes.ToArray());
        _stageOfBlock = stageOf.ToArray();
        final_norm = new RmsNorm(stages[^1].Dimension);
        if (config.Head == VisionHead.MomentProbing) mp_head = new MomentProbingHead(stages[^1].Dimension, config.Outputs, Pooling.Mean, config.MomentProbing);
        else head = nn.Linear(stages[^1].Dimension, config.Outputs);
        drop = new FastDropout(config.Dropout);
        RegisterComponents();
    }

    /// <summary>The configuration this model was built from.</summary>
    public VisionConfig Config { get; }

    /// <summary>The pretrained stem, or null.</summary>
    public ConvGraph? Stem => stem;

    /// <inheritdoc/>
    public override TrainableModel CreateSibling() => new VisionModel(Config);

    /// <inheritdoc/>
    public override string ConfigurationJson => Config.ToJson();

    /// <inheritdoc/>
    public override string Describe()
        => $"{Config.ImageWidth}×{Config.ImageHeight} input, {Config.Backbone}, stages {string.Join("/", Config.Stages.Select(s => $"{s.Depth}×{s.Dimension}"))}, {Config.Outputs} classes";

    /// <summary>
    /// A model whose backbone is the pretrained ResNet18 cut at <paramref name="level"/> (1..4), weights loaded; the rest
    /// of <paramref name="config"/> (stages, mixers, size, classes) is kept. <paramref name="onnxPath"/> null = the copy of
    /// the package Microsoft.ML.DnnImageFeaturizer.ResNet18 in the application's folder.
    /// </summary>
    public static VisionModel WithPretrainedResNet18(VisionConfig config, int level = 4, string? onnxPath = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var (modelPath, prepPath) = PretrainedImageModels.LocateResNet18(onnxPath);
        var stem = OnnxStemImporter.Import(File.ReadAllBytes(modelPath), File.ReadAllBytes(prepPath), level, Path.GetFileName(modelPath));
        var model = new VisionModel(config with
        {
            Backbone = VisionBackbone.PretrainedStem, Stem = stem.Spec, StemBgr = stem.Bgr, StemMeanHeight = stem.MeanHeight, StemMeanWidth = stem.MeanWidth,
        });
        model.LoadStem(stem);
        return model;
    }

    /// <summary>Copies imported pretrained weights into the stem.</summary>
    internal void LoadStem(ImportedStem imported)
        => (stem ?? throw new InvalidOperationException("This model has no pretrained stem.")).Load(imported);

    /// <summary>Pixels [B, H·W·3] uint8 (RGB, row-major) → float [B, 3, H, W] in 0..255.</summary>
    public Tensor Pixels(Tensor pixels)
    {
        long b = pixels.shape[0];
        if (pixels.shape[1] != (long)Config.ImageHeight * Config.ImageWidth * 3)
            throw new ArgumentException($"The model reads {Config.ImageWidth}×{Config.ImageHeight} RGB images ({Config.ImageHeight * Config.ImageWidth * 3} bytes); got rows of {pixels.shape[1]} bytes.");
        return pixels.view(b, Config.ImageHeight, Config.ImageWidth, 3).permute(0, 3, 1, 2).to(ScalarType.Float32);
    }

    /// <summary>Pooled features [B, C] of a batch of images.</summary>
    public Tensor Encode(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        return EncodeTokens(pixels).mean(new long[] { 1 }).MoveToOuterDisposeScope();
    }

    /// <summary>Final token states [B, T, C] (after the last norm) of a batch of images.</summary>
    public Tensor EncodeTokens(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        var x = Pixels(pixels);
        if (training && Config.Augment) x = ImageAugmentation.RandomResizedCropAndFlip(x, Config.MinCropScale, Config.HorizontalFlip);
        var dtype = embed_norm.parameters().First().dtype;
        Tensor map;
        if (stem is not null)
        {
            if (Config.FreezeStem)
                using (torch.no_grad()) map = stem.forward(x).to(dtype);
            else map = stem.forward(x).to(dtype);
        }
        else
        {
            // Kept on the device: a fresh copy from .NET memory per batch would synchronize the host with the GPU.
            // (Three values: formatting them into the key per batch costs nothing next to the batch.)
            var mean = DeviceConstants.Get(DeviceConstants.KeyOf("image mean", Config.Mean), x.device, () => Config.Mean).view(1, 3, 1, 1);
            var std = DeviceConstants.Get(DeviceConstants.KeyOf("image std", Config.Std), x.device, () => Config.Std).view(1, 3, 1, 1);
            map = ((x / 255 - mean) / std).to(dtype);
            if (patch_embed is not null) map = patch_embed.forward(map);
            else
            {
                for (int i = 0; i < conv_stem!.Count; i++)
                {
                    map = conv_stem[i].forward(map);
                    if (i < conv_stem.Count - 1) map = nn.functional.gelu(map);
                }
            }
        }
        var grid = ((int)map.shape[2], (int)map.shape[3]);
        var tokens = map.flatten(2).transpose(1, 2);                              // [B, T, C]
        if (stem_proj is not null) tokens = stem_proj.forward(tokens);
        tokens = embed_norm.forward(tokens);
        if (pos_embedding is not null) tokens = tokens + Positions(grid);
        tokens = drop.forward(tokens);
        int stage = 0;
        for (int i = 0; i < blocks.Count; i++)
        {
            while (stage < _stageOfBlock[i]) (tokens, grid) = Downsample(tokens, grid, stage++);
            if (cpe.Count > 0) tokens = tokens + cpe[i].Forward(tokens, null, grid);
            blocks[i].Mixer.Grid = grid;
            tokens = blocks[i].forward(tokens, null);
        }
        while (stage < Config.Stages.Count - 1) (tokens, grid) = Downsample(tokens, grid, stage++);
        return final_norm.forward(tokens).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    public override Tensor Forward(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var pixels = batch.Pixels ?? throw new ArgumentException("This model reads images but the batch has none.");
        var tokens = EncodeTokens(pixels);
        var pooled = tokens.mean(new long[] { 1 });
        if (mp_head is not null)
        {
            var all = torch.ones(tokens.shape[0], tokens.shape[1], dtype: ScalarType.Bool, device: tokens.device);
            return mp_head.forward(drop.forward(tokens), all, pooled).MoveToOuterDisposeScope();
        }
        return head!.forward(drop.forward(pooled)).MoveToOuterDisposeScope();
    }

    private (Tensor Tokens, (int Height, int Width) Grid) Downsample(Tensor tokens, (int Height, int Width) grid, int fromStage)
    {
        long b = tokens.shape[0], c = tokens.shape[2];
        var map = tokens.transpose(1, 2).reshape(b, c, grid.Height, grid.Width);
        map = downsample[fromStage].forward(map);
        var next = ((int)map.shape[2], (int)map.shape[3]);
        return (downsample_norm[fromStage].forward(map.flatten(2).transpose(1, 2)), next);
    }

    // The learned table is for the configured grid; another grid (a different input size) gets it resized bicubically.
    private Tensor Positions((int Height, int Width) grid)
    {
        var g0 = Config.Grids()[0];
        if (grid == g0) return pos_embedding!;
        long c = pos_embedding!.shape[2];
        var table = pos_embedding.transpose(1, 2).reshape(1, c, g0.Height, g0.Width);
        table = nn.functional.interpolate(table, new long[] { grid.Height, grid.Width }, mode: InterpolationMode.Bicubic, align_corners: false);
        return table.flatten(2).transpose(1, 2);
    }
}

using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Vision;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Tests.Vision;

public sealed class VisionModelTests
{
    private static Tensor Logits(VisionModel model, Tensor pixels)
    {
        using var batch = new ModelBatch { Pixels = pixels.clone(), Mask = torch.ones(pixels.shape[0], 1, dtype: ScalarType.Bool) };
        return model.Forward(batch);
    }

    private static Tensor RandomPixels(long b, int h, int w) => torch.randint(0, 256, new long[] { b, (long)h * w * 3 }).to(ScalarType.Byte);

    [Fact]
    public void A1024PixelImageBecomes4096PatchTokensAndStagesHalveTheGrid()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 1024, ImageHeight = 1024, PatchSize = 16, Outputs = 3, Mixer = "mala",
            Stages = new() { new VisionStage(1, 16, 2), new VisionStage(1, 32, 2) },
        };
        Assert.Equal(new[] { (64, 64), (32, 32) }, config.Grids());
        using var model = new VisionModel(config);
        model.eval();
        using var _ = no_grad();
        using var logits = Logits(model, RandomPixels(1, 1024, 1024));
        Assert.Equal(new long[] { 1, 3 }, logits.shape);
        Assert.True(logits.isfinite().all().item<bool>());
    }

    [Theory]
    [InlineData("mala")]
    [InlineData("rala")]
    [InlineData("inline")]
    [InlineData("agent")]
    [InlineData("focused")]
    [InlineData("efficientvit")]
    [InlineData("nalaformer")]
    [InlineData("softmax")]
    [InlineData("linear")]
    [InlineData("hilo")]
    [InlineData("van")]
    [InlineData("l2vit")]
    public void EveryBidirectionalMechanismRunsOnTheGridAndLearns(string mixer)
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 32, ImageHeight = 32, PatchSize = 4, Outputs = 2, Mixer = mixer, Stages = new() { new VisionStage(1, 16, 2) },
        };
        using var model = new VisionModel(config);
        Assert.All(model.modules().OfType<Microsoft.ML.LinearAttention.Attention.TokenMixer>(), m => Assert.Equal((8, 8), m.Grid));
        model.train();
        var pixels = RandomPixels(3, 32, 32);
        using var logits = Logits(model, pixels);
        logits.sum().backward();
        Assert.All(model.parameters().Where(p => p.requires_grad), p => Assert.NotNull(p.grad));
    }

    [Fact]
    public void MomentProbingHeadTrainsOnTheTokens()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 16, ImageHeight = 16, PatchSize = 4, Outputs = 3, Stages = new() { new VisionStage(1, 16, 2) },
            Head = VisionHead.MomentProbing, MomentProbing = new LinearAttention.FineTuning.MomentProbing.MomentProbingOptions { HiddenDim = 32, Heads = 4 },
        };
        using var model = new VisionModel(config);
        Assert.Contains(model.named_parameters(), p => p.name.StartsWith("mp_head.classifier2"));
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("head."));
        model.train();
        using var logits = Logits(model, RandomPixels(2, 16, 16));
        Assert.Equal(new long[] { 2, 3 }, logits.shape);
        logits.sum().backward();
        Assert.All(model.parameters(), p => Assert.NotNull(p.grad));
        Assert.Throws<ArgumentException>(() => (config with { MomentProbing = new() { HiddenDim = 30, Heads = 4 } }).Validate());
    }

    [Fact]
    public void AugmentationOnlyInTrainingModeAndRepeatableUnderASeed()
    {
        var config = new VisionConfig { ImageWidth = 16, ImageHeight = 16, PatchSize = 4, Outputs = 2, Stages = new() { new VisionStage(1, 16, 2) } };
        Torch.Seed();
        using var model = new VisionModel(config);
        var pixels = RandomPixels(2, 16, 16);
        model.eval();
        using var e1 = Logits(model, pixels);
        using var e2 = Logits(model, pixels);
        Assert.True(e1.eq(e2).all().item<bool>());
        model.train();
        Torch.Seed(7);
        using var t1 = Logits(model, pixels);
        Torch.Seed(7);
        using var t2 = Logits(model, pixels);
        Assert.True(t1.eq(t2).all().item<bool>());
        Assert.False(t1.allclose(e1));

        // one random crop and flip per image of the batch, same size out
        using var x = torch.rand(1, 3, 8, 8).expand(16, 3, 8, 8).contiguous();
        Torch.Seed(3);
        using var augmented = ImageAugmentation.RandomResizedCropAndFlip(x, minScale: 0.5, flip: true);
        Assert.Equal(new long[] { 16, 3, 8, 8 }, augmented.shape);
        Assert.False(augmented[0].allclose(augmented[1]));
    }

    [Fact]
    public void ResizeModesGiveTheTargetSizeWithTheExpectedContent()
    {
        // 40 × 20: left half red, right half blue
        var rgb = new byte[40 * 20 * 3];
        for (int y = 0; y < 20; y++)
            for (int x = 0; x < 40; x++)
            {
                int i = (y * 40 + x) * 3;
                if (x < 20) rgb[i] = 255; else rgb[i + 2] = 255;
            }
        byte[] At(byte[] img, int w, int x, int y) => img.AsSpan((y * w + x) * 3, 3).ToArray();

        var crop = ImageDecoder.Resize(rgb, 40, 20, new ImageGeometry(10, 10, ImageResizeMode.CenterCrop));
        Assert.Equal(300, crop.Length);
        Assert.Equal(new byte[] { 255, 0, 0 }, At(crop, 10, 0, 5));              // the centre 20 × 20 keeps both halves
        Assert.Equal(new byte[] { 0, 0, 255 }, At(crop, 10, 9, 5));

        var pad = ImageDecoder.Resize(rgb, 40, 20, new ImageGeometry(10, 10, ImageResizeMode.Pad));
        Assert.Equal(new byte[] { 0, 0, 0 }, At(pad, 10, 0, 0));                 // black bar above the 10 × 5 image
        Assert.Equal(new byte[] { 255, 0, 0 }, At(pad, 10, 1, 5));

        var stretch = ImageDecoder.Resize(rgb, 40, 20, new ImageGeometry(8, 8, ImageResizeMode.Stretch));
        Assert.Equal(new byte[] { 255, 0, 0 }, At(stretch, 8, 0, 0));
        Assert.Equal(new byte[] { 0, 0, 255 }, At(stretch, 8, 7, 7));

        Assert.Same(rgb, ImageDecoder.Resize(rgb, 40, 20, new ImageGeometry(40, 20, ImageResizeMode.CenterCrop)));
        Assert.Throws<InvalidDataException>(() => ImageDecoder.Decode(new byte[] { 1, 2, 3 }, new ImageGeometry(8, 8, ImageResizeMode.Stretch)));
    }

    [Fact]
    public void ConfigurationRoundTripsThroughJsonAndRejectsBadSettings()
    {
        var config = new VisionConfig
        {
            ImageWidth = 64, ImageHeight = 48, PatchSize = 8, ConvStem = true, Position = VisionPosition.Learned, Outputs = 4,
            Stages = new() { new VisionStage(2, 32, 4) },
            Layers = EncoderConfig.Plan(new[] { new LayerMixer("mala"), new LayerMixer("softmax") }),
        };
        var back = VisionConfig.FromJson(config.ToJson());
        Assert.Equal(config.ToJson(), back.ToJson());
        Assert.Equal(("softmax", typeof(Microsoft.ML.LinearAttention.Attention.Softmax.SoftmaxOptions)), (back.MixerFor(1).Name, back.MixerFor(1).Options.GetType()));
        Assert.Throws<ArgumentException>(() => (config with { PatchSize = 6 }).Validate());                      // conv stem needs a power of two
        Assert.Throws<ArgumentException>(() => (config with { Stages = new() { new VisionStage(2, 30, 4) } }).Validate());
        Assert.Throws<ArgumentException>(() => (config with { Layers = EncoderConfig.Plan(new[] { new LayerMixer("mala") }) }).Validate());
        Assert.Throws<ArgumentException>(() => (config with { Backbone = VisionBackbone.PretrainedStem }).Validate());
        Assert.Throws<ArgumentException>(() => (config with { Mixer = "nope", Layers = null }).Validate());
    }
}

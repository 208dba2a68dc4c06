using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>
/// <see cref="VisionModelExport"/>: image models (patch encoders, the pretrained ResNet18 stem) written as ONNX and run
/// in ONNX Runtime on the same pixels TorchSharp scored: probabilities within 1e-4, the same arg-max class.
/// </summary>
public sealed class VisionModelExportTests(ITestOutputHelper output)
{
    private static TorchSharp.torch.Tensor RandomPixels(long b, int h, int w) => torch.randint(0, 256, new long[] { b, (long)h * w * 3 }).to(ScalarType.Byte);

    // Randomly initialised weights score far from uniform only if they are not tiny; a few steps of noise on the
    // parameters make the comparison meaningful without training.
    private static void Perturb(VisionModel model)
    {
        using var _ = no_grad();
        foreach (var p in model.parameters()) if (p.requires_grad) p.add_(torch.randn_like(p) * 0.05);
    }

    /// <summary>Exports <paramref name="model"/>, runs it in ONNX Runtime and in TorchSharp on random pixels, compares.</summary>
    private double AssertParity(VisionModel model, int rows = 5)
    {
        var c = model.Config;
        model.eval();
        using var pixels = RandomPixels(rows, c.ImageHeight, c.ImageWidth);
        float[][] expected;
        long[] expectedClass;
        using (no_grad())
        using (var batch = new ModelBatch { Pixels = pixels.clone(), Mask = torch.ones(rows, 1, dtype: ScalarType.Bool) })
        using (var logits = model.Forward(batch))
        using (var probabilities = logits.softmax(-1))
        {
            var flat = probabilities.contiguous().data<float>().ToArray();
            expected = Enumerable.Range(0, rows).Select(i => flat.AsSpan(i * c.Outputs, c.Outputs).ToArray()).ToArray();
            expectedClass = logits.argmax(-1).data<long>().ToArray();
        }

        using var stream = new MemoryStream();
        int nodes = VisionModelExport.Write(model, stream);
        Assert.True(nodes > 10);
        using var planar = model.Pixels(pixels).contiguous();                                   // [B, 3, H, W] floats 0..255
        var input = new DenseTensor<float>(planar.data<float>().ToArray(), new[] { rows, 3, c.ImageHeight, c.ImageWidth });
        using var session = new InferenceSession(stream.ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(VisionModelExport.Image, input) });
        var scores = results.First(r => r.Name == VisionModelExport.Scores).AsTensor<float>().ToArray();
        var actual = Enumerable.Range(0, rows).Select(i => scores.AsSpan(i * c.Outputs, c.Outputs).ToArray()).ToArray();
        var predicted = results.First(r => r.Name == VisionModelExport.PredictedLabel).AsTensor<long>().ToArray();
        double max = OnnxParity.AssertClose(expected, actual, what: c.Backbone.ToString());
        Assert.Equal(expectedClass, predicted);
        Assert.True(expected.SelectMany(r => r).Max() > 1.0 / c.Outputs + 1e-3, "the probabilities are uniform: the comparison would prove nothing");
        output.WriteLine($"{c.Backbone}, {nodes} nodes: max |Δ| {max:E2}, classes {string.Join(",", predicted)}, top probability {expected.SelectMany(r => r).Max():F3}");
        return max;
    }

    [Fact]
    public void PatchEncoderWithStagesConvPositionsAndAHybridOfMechanismsScoresLikeTorchSharp()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 24, ImageHeight = 16, PatchSize = 4, Outputs = 4, Position = VisionPosition.Convolution,
            Stages = new() { new VisionStage(2, 16, 2), new VisionStage(2, 24, 2) },
            Layers = new() { new("softmax", null), new("linear", null), new("hedgehog", null), new("linear", MixerRegistry.SerializeOptions(new LinearMixerOptions { FeatureMap = "relu" })) },
        };
        using var model = new VisionModel(config);
        Perturb(model);
        AssertParity(model);
    }

    [Fact]
    public void ConvStemWithLearnedPositionsAndMomentProbingHeadScoresLikeTorchSharp()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 16, ImageHeight = 16, PatchSize = 4, ConvStem = true, Outputs = 3, Position = VisionPosition.Learned, Mixer = "softmax",
            Stages = new() { new VisionStage(1, 16, 2) }, Head = VisionHead.MomentProbing,
            MomentProbing = new MomentProbingOptions { HiddenDim = 16, Heads = 2 },
        };
        using var model = new VisionModel(config);
        Perturb(model);
        AssertParity(model);
    }

    [Fact]
    public void PretrainedResNet18StemAtANonNativeSizeScoresLikeTorchSharp()
    {
        Torch.Seed();
        // 72×56: the mean image is resized and the stride-2 layers' "same" pads are recomputed for this size.
        var config = new VisionConfig { ImageWidth = 72, ImageHeight = 56, Outputs = 3, Mixer = "linear", Stages = new() { new VisionStage(1, 16, 2) } };
        using var model = VisionModel.WithPretrainedResNet18(config, level: 2);
        Perturb(model);
        AssertParity(model, rows: 2);
    }

    [Fact]
    public void DefaultMalaWithTwoDimensionalRopeLepeAndGateOnANonSquareGridScoresLikeTorchSharp()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 24, ImageHeight = 16, PatchSize = 4, Outputs = 3,
            Stages = new() { new VisionStage(1, 16, 2), new VisionStage(1, 32, 4) },
        };
        Assert.Equal("mala", config.Mixer);
        using var model = new VisionModel(config);
        Perturb(model);
        AssertParity(model);
    }

    [Theory]
    [InlineData("""{"Rope":false,"LepeKernel":0,"OutputGate":false,"Bias":false}""")]
    [InlineData("""{"LepeKernel":3}""")]
    public void MalaVariantsScoreLikeTorchSharp(string optionsJson)
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 16, ImageHeight = 16, PatchSize = 4, Outputs = 2, MixerOptionsJson = optionsJson, Position = VisionPosition.None,
            Stages = new() { new VisionStage(1, 16, 2) },
        };
        using var model = new VisionModel(config);
        Perturb(model);
        AssertParity(model);
    }

    [Fact]
    public void UnsupportedImageMechanismIsRefusedWithTheListOfExportableOnes()
    {
        Torch.Seed();
        var config = new VisionConfig
        {
            ImageWidth = 16, ImageHeight = 16, PatchSize = 4, Outputs = 2,
            Stages = new() { new VisionStage(2, 16, 2) }, Layers = new() { new("softmax", null), new("rala", null) },
        };
        using var model = new VisionModel(config);
        var e = Assert.Throws<NotSupportedException>(() => VisionModelExport.Write(model, new MemoryStream()));
        Assert.Contains("'rala' (block 1)", e.Message);
        Assert.Contains("softmax, linear, hedgehog, mala", e.Message);
        Assert.Contains("pretrained ResNet18 stem", e.Message);
    }
}

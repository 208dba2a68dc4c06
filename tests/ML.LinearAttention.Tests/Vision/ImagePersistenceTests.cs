using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Vision;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Vision;

public sealed class ImagePersistenceTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-vision-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (float[][] Before, float[][] After, long Bytes) RoundTrip(ImageClassificationOptions o)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ImageData.MnistRows(0, 96));
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Digit")
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
            .Fit(train);
        var path = Path.Combine(_dir, Guid.NewGuid().ToString("N") + ".zip");
        ml.Model.Save(model, train.Schema, path);
        var test = ImageData.MnistRows(9000, 24);
        var before = model.Transform(ml.Data.LoadFromEnumerable(test)).GetColumn<float[]>("Score").ToArray();

        var fresh = new MLContext();
        var loaded = LinearAttentionModel.Load(fresh, path, out var schema);
        var after = loaded.Transform(fresh.Data.LoadFromEnumerable(test)).GetColumn<float[]>("Score").ToArray();

        using var engine = fresh.Model.CreatePredictionEngine<DigitRow, DigitPrediction>(loaded, schema);
        var single = engine.Predict(test[0]);
        Assert.Equal(after[0].Length, single.Score.Length);                    // one row per forward vs 24: same up to rounding
        Assert.All(after[0].Zip(single.Score), p => Assert.Equal(p.First, p.Second, 1e-5f));
        var classifier = Assert.IsType<ImageClassificationTransformer>(((TransformerChain<ITransformer>)loaded).LastTransformer);
        Assert.Equal(o.Backbone, classifier.VisionConfiguration.Backbone);
        Assert.Equal("Image", classifier.ImageColumnName);
        Assert.Equal(10, classifier.ClassCount);
        Assert.Throws<InvalidOperationException>(() => classifier.Configuration);
        return (before, after, new FileInfo(path).Length);
    }

    [SharedDataFact(ImageData.Mnist)]
    public void SaveLoadGivesIdenticalPredictionsForAHybridHierarchicalPatchEncoder()
    {
        var o = ImageClassificationTests.TinyDigits();
        o.MaxEpochs = 1;
        o.ConvStem = true;
        o.Position = VisionPosition.Learned;
        o.Stages = new[] { new VisionStage(1, 16, 2), new VisionStage(1, 32, 2) };
        o.HybridPlan = "softmax@-1";                                            // linear early, softmax late
        var (before, after, bytes) = RoundTrip(o);
        output.WriteLine($"model file {bytes:N0} bytes");
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
    }

    [SharedDataFact(ImageData.Mnist)]
    public void SaveLoadKeepsAFineTunedPretrainedStemAndAMomentProbingHeadWithoutTheOnnxFile()
    {
        var o = ImageClassificationTests.TinyDigits();
        o.MaxEpochs = 1;
        o.Backbone = VisionBackbone.PretrainedStem;
        o.PretrainedStemLevel = 1;                                             // conv1 + layer1: 157K weights
        o.FreezeStem = false;
        o.NumberOfLayers = 1;
        o.Head = VisionHead.MomentProbing;                                      // second-order head on the stem's tokens
        o.MomentProbing = new LinearAttention.FineTuning.MomentProbing.MomentProbingOptions { HiddenDim = 32, Heads = 4 };
        var (before, after, bytes) = RoundTrip(o);
        output.WriteLine($"model file {bytes:N0} bytes");
        Assert.InRange(bytes, 500_000, 5_000_000);                             // the stem's weights and mean image travel in the file
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
    }

    private sealed class DigitPrediction
    {
        public float[] Score { get; set; } = Array.Empty<float>();
        public uint PredictedLabel { get; set; }
    }
}

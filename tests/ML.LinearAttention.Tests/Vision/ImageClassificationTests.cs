using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Vision;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Runtime;

namespace Microsoft.ML.LinearAttention.Tests.Vision;

public sealed class ImageClassificationTests(ITestOutputHelper output)
{
    /// <summary>A small patch encoder for 28×28 digits: 7×7 patches of 4 px, 2 MALA blocks of 32.</summary>
    internal static ImageClassificationOptions TinyDigits() => new()
    {
        ImageWidth = 28, ImageHeight = 28, PatchSize = 4, ModelDimension = 32, NumberOfLayers = 2, NumberOfHeads = 2,
        Attention = "mala", HorizontalFlip = false, MinCropScale = 0.7, BatchSize = 32, MaxEpochs = 3, LearningRate = 3e-3,
        LogEverySteps = 0, CpuThreads = 1, InferenceBatchSize = 64,
    };

    private List<string> Capture(MLContext ml)
    {
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal) && e.Kind != Microsoft.ML.Runtime.ChannelMessageKind.Trace) lock (log) log.Add(e.Message); };
        return log;
    }

    [SharedDataFact(ImageData.Mnist)]
    public void FitAndEvaluateOnMnistFarAboveChance()
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var log = Capture(ml);
        var train = ml.Data.LoadFromEnumerable(ImageData.MnistRows(0, 2000));
        var test = ml.Data.LoadFromEnumerable(ImageData.MnistRows(9000, 500));
        var progress = new List<TrainingProgress>();
        var o = TinyDigits();
        o.Progress = new SyncProgress<TrainingProgress>(progress.Add);

        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Digit")
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedDigit", "PredictedLabel"));
        var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        foreach (var line in log) output.WriteLine(line);
        output.WriteLine($"micro {metrics.MicroAccuracy:F3} macro {metrics.MacroAccuracy:F3} logloss {metrics.LogLoss:F3} in {sw.Elapsed.TotalSeconds:F1}s");

        Assert.True(metrics.MicroAccuracy > 0.5, $"accuracy {metrics.MicroAccuracy:F3} should be far above the 0.1 of chance");
        var predicted = scored.GetColumn<string>("PredictedDigit").ToList();
        Assert.All(predicted, p => Assert.Matches("^[0-9]$", p));
        var slotNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Score"].GetSlotNames(ref slotNames);
        Assert.Equal(10, slotNames.Length);
        Assert.Contains(log, l => l.Contains("images/s") && l.Contains("ETA"));
        Assert.Contains(log, l => l.Contains("token grids 7×7"));
        Assert.Equal(new[] { 1, 2, 3 }, progress.Select(p => p.Epoch));
    }

    [SharedDataFact(ImageData.Flowers)]
    public void PretrainedStemBeatsFromScratchOnTheSamePhotos()
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var (trainRows, testRows) = ImageData.FlowerSplit();
        // decoded once (LoadImages is exercised by the bytes test): both models then read the same 112 × 112 pixels
        var train = ml.Data.LoadFromEnumerable(ImageData.Decoded112(trainRows));
        var test = ml.Data.LoadFromEnumerable(ImageData.Decoded112(testRows));

        double Run(ImageClassificationOptions o, string what)
        {
            var t = Stopwatch.StartNew();
            var model = ml.Transforms.Conversion.MapValueToKey("Label", "Flower")
                .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
                .Fit(train);
            var m = ml.MulticlassClassification.Evaluate(model.Transform(test));
            output.WriteLine($"{what}: accuracy {m.MicroAccuracy:F3} (macro {m.MacroAccuracy:F3}) in {t.Elapsed.TotalSeconds:F1}s");
            return m.MicroAccuracy;
        }

        var common = new ImageClassificationOptions
        {
            ImageWidth = 112, ImageHeight = 112, BatchSize = 16, MaxEpochs = 2, LogEverySteps = 0, CpuThreads = 2, Attention = "mala",
            NumberOfHeads = 2, InferenceBatchSize = 40,
        };
        var scratch = common.ShallowCopy();
        scratch.PatchSize = 16;
        scratch.ModelDimension = 32;
        scratch.NumberOfLayers = 2;
        scratch.LearningRate = 3e-3;
        var pretrained = common.ShallowCopy();
        pretrained.Backbone = VisionBackbone.PretrainedStem;
        pretrained.PretrainedStemLevel = 4;
        pretrained.FreezeStem = true;
        pretrained.ModelDimension = 64;
        pretrained.NumberOfLayers = 1;
        pretrained.LearningRate = 2e-3;

        double fromScratch = Run(scratch, "patch encoder from scratch");
        double withStem = Run(pretrained, "frozen ResNet18 stem + 1 MALA block");
        output.WriteLine($"total {sw.Elapsed.TotalSeconds:F1}s");
        Assert.True(withStem > 0.5, $"the pretrained stem reached only {withStem:F3} (5 classes, chance 0.2)");
        Assert.True(withStem > fromScratch + 0.15, $"pretrained {withStem:F3} should clearly beat from scratch {fromScratch:F3}");
    }

    [SharedDataFact(ImageData.Flowers)]
    public void EncodedBytesAndRawImageBytesScoreExactlyAsLoadedImages()
    {
        var ml = new MLContext(seed: 1);
        var (trainRows, testRows) = ImageData.FlowerSplit();
        var o = new ImageClassificationOptions
        {
            ImageWidth = 32, ImageHeight = 32, PatchSize = 8, ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, MaxEpochs = 1,
            BatchSize = 32, LogEverySteps = 0, CpuThreads = 1,
        };
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Flower")
            .Append(ml.Transforms.LoadImages("Image", ImageData.FlowersFolder, "Path"))
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
            .Fit(ml.Data.LoadFromEnumerable(trainRows.Take(48)));
        var classifier = model.LastTransformer;
        var rows = testRows.Take(10).ToList();
        var viaImages = model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToList();

        var bytesRows = rows.Select(r => new FlowerBytesRow { Image = File.ReadAllBytes(Path.Combine(ImageData.FlowersFolder, r.Path)), Flower = r.Flower });
        var viaBytes = classifier.Transform(ml.Data.LoadFromEnumerable(bytesRows)).GetColumn<float[]>("Score").ToList();
        var raw = ml.Transforms.LoadRawImageBytes("Image", ImageData.FlowersFolder, "Path").Fit(ml.Data.LoadFromEnumerable(rows));
        var viaRaw = classifier.Transform(raw.Transform(ml.Data.LoadFromEnumerable(rows))).GetColumn<float[]>("Score").ToList();
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(viaImages[i], viaBytes[i]);
            Assert.Equal(viaImages[i], viaRaw[i]);
        }
    }

    [Fact]
    public void SchemaErrorsNameTheColumnTheExpectedAndTheActualType()
    {
        var ml = new MLContext(seed: 1);
        var rows = new[] { new { Image = "not an image", Digit = "1", Label = 1f } };
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Key", "Digit").Fit(data).Transform(data);

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.LinearAttention.ImageClassification("Key", "Image", options: TinyDigits()).Fit(keyed));
        Assert.Contains("'Image'", e.Message);
        Assert.Contains("Image (MLImage", e.Message);
        Assert.Contains("String", e.Message);

        var missing = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.LinearAttention.ImageClassification("Key", "Picture", options: TinyDigits()).Fit(keyed));
        Assert.Contains("'Picture' was not found", missing.Message);

        var digits = ml.Data.LoadFromEnumerable(new[] { new DigitRow { Image = ImageData_Blank(), Digit = "1" } });
        var label = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.LinearAttention.ImageClassification("Digit", "Image", options: TinyDigits()).Fit(digits));
        Assert.Contains("'Digit'", label.Message);
        Assert.Contains("Key<UInt32>", label.Message);

        // GetOutputSchema (pipeline construction) checks the same before any data is read.
        var shape = MLNetBridge.ShapeOf(keyed.Schema);
        var shapeError = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.LinearAttention.ImageClassification("Key", "Image", options: TinyDigits()).GetOutputSchema(shape));
        Assert.Contains("String", shapeError.Message);
    }

    [SharedDataFact(ImageData.Mnist)]
    public void BadSettingsFailWithTheFix()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Digit").Fit(ml.Data.LoadFromEnumerable(ImageData.MnistRows(0, 8)))
            .Transform(ml.Data.LoadFromEnumerable(ImageData.MnistRows(0, 8)));
        var o = TinyDigits();
        o.PatchSize = 5;
        var e = Assert.Throws<ArgumentException>(() => ml.Transforms.LinearAttention.ImageClassification(options: o).Fit(data));
        Assert.Contains("multiple of PatchSize 5", e.Message);
        o = TinyDigits();
        o.HybridPlan = "softmax@9";
        Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.ImageClassification(options: o).Fit(data));
        o = TinyDigits();
        o.Backbone = VisionBackbone.PretrainedStem;
        o.PretrainedModelPath = "/nonexistent/ResNet18.onnx";
        Assert.Throws<FileNotFoundException>(() => ml.Transforms.LinearAttention.ImageClassification(options: o).Fit(data));
        o = TinyDigits();
        o.CancellationToken = new CancellationToken(canceled: true);
        Assert.ThrowsAny<OperationCanceledException>(() => ml.Transforms.LinearAttention.ImageClassification(options: o).Fit(data));
    }

    private static MLImage ImageData_Blank()
        => MLImage.CreateFromPixels(28, 28, MLPixelFormat.Bgra32, Enumerable.Repeat((byte)255, 28 * 28 * 4).ToArray());

    /// <summary>IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

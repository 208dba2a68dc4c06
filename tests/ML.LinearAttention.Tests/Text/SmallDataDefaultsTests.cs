using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>
/// The defaults for small data: the automatic validation split, early stopping on the validation log-loss with the best
/// epoch's weights restored, the temperature that calibrates the probabilities (kept through Save/Load), and clear
/// errors for bad values of these options.
/// </summary>
public sealed class SmallDataDefaultsTests(ITestOutputHelper output)
{
    /// <summary>Rows whose labels are coin flips: any fit of the training rows is overfitting, so validation log-loss rises.</summary>
    private static List<Example> NoiseRows(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            int len = 4 + rng.Next(8);
            return new Example { Ids = Enumerable.Range(0, len).Select(_ => 1 + rng.Next(60)).ToArray(), Segments = new int[len], Label = rng.Next(2), Length = len };
        }).ToList();
    }

    [Fact]
    public void EarlyStoppingOnValidationLogLossRestoresTheBestEpochsWeights()
    {
        torch.random.manual_seed(3);
        var config = new EncoderConfig { VocabularySize = 64, PadId = 0, ModelDim = 32, NumLayers = 1, NumHeads = 2, FfnMultiplier = 2, Dropout = 0, Outputs = 2 };
        using var model = new SequenceModel(config);
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        var train = NoiseRows(96, 1);
        var validation = NoiseRows(64, 2);
        var log = new ListLog();
        var settings = new TrainingSettings { BatchSize = 16, MaxEpochs = 12, LearningRate = 1e-2, WarmupRatio = 0, Decay = LearningRateDecay.Constant, EarlyStoppingPatience = 2, LogEverySteps = 0, Seed = 3 };

        var report = ModelTrainer.Train(model, spec, () => train, train.Count, () => validation, settings, torch.CPU, log);
        foreach (var line in log.Lines) output.WriteLine(line);

        // Epochs are judged on the log-loss at their best temperature (the "(x calibrated)" of each epoch's line).
        var epochLogLoss = log.Lines.Where(l => l.Contains("done:", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split(" (")[1].Split(' ')[0], CultureInfo.InvariantCulture)).ToList();
        Assert.True(report.StoppedEarly, "memorising coin flips must stop early");
        Assert.True(report.Epochs < settings.MaxEpochs);
        Assert.Equal(epochLogLoss.Count, report.Epochs);
        int best = report.BestEpoch!.Value;
        Assert.Equal(epochLogLoss.Min(), epochLogLoss[best - 1], 4);
        Assert.True(epochLogLoss[^1] > epochLogLoss[best - 1] + 1e-3, "the last epoch must be worse than the best, or restoring proves nothing");
        Assert.Contains(log.Lines, l => l.StartsWith($"Early stopping after epoch {report.Epochs}", StringComparison.Ordinal));
        Assert.Contains(log.Lines, l => l.StartsWith($"Restored the weights of epoch {best}", StringComparison.Ordinal));

        // The model now scores as the best epoch did (before calibration), not as the last one.
        var now = ValidationScoring.Score(model, spec, validation, 16, 65536, torch.CPU);
        Assert.Equal(report.BestValidationLogLoss!.Value, now.LogLoss!.Value, 4);
        Assert.Equal(epochLogLoss[best - 1], now.CalibratedLogLoss!.Value, 4);
        Assert.NotNull(report.Temperature);
        Assert.True(report.CalibratedValidationLogLoss <= report.BestValidationLogLoss + 1e-9);
    }

    [Fact]
    public void TemperatureIsTheOneThatMinimisesTheLogLoss()
    {
        // Confident logits that are right only 70% of the time: the calibrated temperature is well above 1.
        var rng = new Random(1);
        var logits = new List<float[]>();
        var labels = new List<long>();
        for (int i = 0; i < 400; i++)
        {
            int truth = rng.Next(3);
            int predicted = rng.NextDouble() < 0.7 ? truth : (truth + 1 + rng.Next(2)) % 3;
            var z = new float[3];
            z[predicted] = 6;
            logits.Add(z);
            labels.Add(truth);
        }
        double at1 = ValidationScoring.LogLoss(logits, labels, 1);
        var grid = Enumerable.Range(1, 400).Select(i => i * 0.05).Select(t => (t, loss: ValidationScoring.LogLoss(logits, labels, t))).MinBy(p => p.loss);
        output.WriteLine($"log-loss at T=1 {at1:F4}; best on a grid T={grid.t:F2} {grid.loss:F4}");
        Assert.True(grid.t > 2, $"overconfident logits need T > 2, grid says {grid.t}");
        Assert.True(grid.loss < at1 - 0.2);
    }

    private sealed class Row
    {
        public string Text { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private static List<Row> Sentences(int n)
    {
        var good = new[] { "great", "lovely", "works", "fast", "happy" };
        var bad = new[] { "broken", "slow", "refund", "awful", "crash" };
        var filler = new[] { "the", "app", "was", "really", "today", "and", "it" };
        var rng = new Random(4);
        return Enumerable.Range(0, n).Select(i =>
        {
            bool positive = rng.Next(2) == 0;
            var words = Enumerable.Range(0, 6).Select(_ => filler[rng.Next(filler.Length)]).ToList();
            words.Insert(rng.Next(words.Count), (positive ? good : bad)[rng.Next(5)]);
            // 15% label noise keeps the classifier from certainty, so there is a temperature to fit.
            bool label = rng.NextDouble() < 0.15 ? !positive : positive;
            return new Row { Text = string.Join(' ', words), Label = label ? "pos" : "neg" };
        }).ToList();
    }

    private static TextClassificationOptions Small() => new()
    {
        TextColumnNames = new[] { "Text" }, ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 1,
        MaxSequenceLength = 32, BatchSize = 32, MaxEpochs = 2, LearningRate = 3e-3, LogEverySteps = 0, CpuThreads = 1,
    };

    private static (List<string> Log, ITransformer Model) Fit(MLContext ml, IDataView data, TextClassificationOptions o)
    {
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Transforms.LinearAttention.TextClassification(o)).Fit(data);
        return (log, model);
    }

    [Fact]
    public void WithoutAValidationSetFitHoldsOutASeededSplitAndCalibrates()
    {
        var ml = new MLContext(seed: 1);
        var (log, model) = Fit(ml, ml.Data.LoadFromEnumerable(Sentences(400)), Small());
        (model as IDisposable)?.Dispose();
        Assert.Contains(log, l => l.StartsWith("Validation split: 50 of 400 training rows held out", StringComparison.Ordinal));
        Assert.Contains(log, l => l.StartsWith("Training: 350 rows", StringComparison.Ordinal));
        Assert.Contains(log, l => l.StartsWith("Temperature scaling on 50 validation rows", StringComparison.Ordinal));

        var off = Small();
        off.ValidationFraction = 0;
        var (offLog, offModel) = Fit(new MLContext(seed: 1), ml.Data.LoadFromEnumerable(Sentences(400)), off);
        (offModel as IDisposable)?.Dispose();
        Assert.DoesNotContain(offLog, l => l.StartsWith("Validation split", StringComparison.Ordinal) || l.StartsWith("Temperature", StringComparison.Ordinal));
        Assert.Contains(offLog, l => l.StartsWith("Training: 400 rows", StringComparison.Ordinal));

        var (fewLog, fewModel) = Fit(new MLContext(seed: 1), ml.Data.LoadFromEnumerable(Sentences(120)), Small());
        (fewModel as IDisposable)?.Dispose();
        Assert.Contains(fewLog, l => l.StartsWith("No automatic validation split: 120 training rows are too few", StringComparison.Ordinal));
    }

    [Fact]
    public void MaxEpochsLeftToFitIsLongOnlyWhereEarlyStoppingCanEndIt()
    {
        var ml = new MLContext(seed: 1);
        var auto = Small();
        auto.MaxEpochs = null;
        var (log, model) = Fit(ml, ml.Data.LoadFromEnumerable(Sentences(400)), auto);
        var report = ((IEnumerable<ITransformer>)model).OfType<TextClassificationTransformer>().Single().TrainingReport!;
        (model as IDisposable)?.Dispose();
        Assert.Equal(SmallDataDefaults.ScratchEpochs, report.MaxEpochs);
        Assert.True(report.Epochs <= SmallDataDefaults.ScratchEpochs && report.Epochs >= 1);
        Assert.Contains(log, l => l.StartsWith($"MaxEpochs: up to {SmallDataDefaults.ScratchEpochs} (automatic", StringComparison.Ordinal));
        Assert.Contains(log, l => l.Contains($"up to {SmallDataDefaults.ScratchEpochs} epoch(s)", StringComparison.Ordinal));

        // Without validation rows nothing could stop a long run: the short default.
        var noValidation = Small();
        noValidation.MaxEpochs = null;
        noValidation.ValidationFraction = 0;
        var (offLog, offModel) = Fit(new MLContext(seed: 1), ml.Data.LoadFromEnumerable(Sentences(200)), noValidation);
        (offModel as IDisposable)?.Dispose();
        Assert.Contains(offLog, l => l.Contains($"up to {SmallDataDefaults.PretrainedEpochs} epoch(s)", StringComparison.Ordinal));
        Assert.DoesNotContain(offLog, l => l.StartsWith("MaxEpochs:", StringComparison.Ordinal));

        // The rule itself: a parameter-efficient method (≤ 10 % trainable) on a pretrained or converted model gets enough
        // epochs for PretrainedMinimumSteps (3 to 20); a full fine-tune, no validation rows or patience 0 the short
        // default; a from-scratch model ScratchEpochs; a set value wins.
        var quiet = new ListLog();
        var o = Small();
        o.MaxEpochs = null;
        o.BatchSize = 32;
        const double lora = 0.013, full = 1.0;
        Assert.Equal(11, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 900, lora, quiet));      // 29 steps per epoch
        Assert.Equal(SmallDataDefaults.PretrainedMaxEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 164, lora, quiet));
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 100_000, lora, quiet));
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 900, full, quiet));
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 900, 0.11, quiet));
        Assert.Contains(quiet.Lines, l => l.StartsWith("MaxEpochs: up to 11 (automatic: 900 training rows give 29 step(s) per epoch, and a parameter-efficient method (1.3 % of",
            StringComparison.Ordinal));
        o.GradientAccumulationSteps = 2;
        Assert.Equal(7, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 3000, lora, quiet));       // 47 steps per epoch
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: false, trainRows: 900, lora, quiet));
        Assert.Equal(SmallDataDefaults.ScratchEpochs, SmallDataDefaults.Epochs(o, fromScratch: true, hasValidationRows: true, trainRows: 900, full, quiet));
        o.EarlyStoppingPatience = 0;
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: true, hasValidationRows: true, trainRows: 900, full, quiet));
        Assert.Equal(SmallDataDefaults.PretrainedEpochs, SmallDataDefaults.Epochs(o, fromScratch: false, hasValidationRows: true, trainRows: 900, lora, quiet));
        o.MaxEpochs = 7;
        Assert.Equal(7, SmallDataDefaults.Epochs(o, fromScratch: true, hasValidationRows: true, trainRows: 900, full, quiet));
        Assert.Null(new TextClassificationOptions().MaxEpochs);
    }

    [Fact]
    public void TemperatureRoundTripsThroughSaveAndLoadAndSoftensTheScores()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Sentences(200));
        var o = Small();
        o.ValidationFraction = 0;
        var (_, model) = Fit(ml, data, o);
        static TextClassificationTransformer Classifier(ITransformer chain) => ((IEnumerable<ITransformer>)chain).OfType<TextClassificationTransformer>().Single();
        var classifier = Classifier(model);
        Assert.Equal(1.0, classifier.Temperature); // nothing fit without validation rows: the probabilities are the plain softmax
        float[][] Scores(ITransformer m) => ml.Data.CreateEnumerable<Scored>(m.Transform(data), reuseRowObject: false).Select(s => s.Score).ToArray();
        var plain = Scores(model);

        SmallDataDefaults.StoreTemperature((SequenceModel)classifier.Model, 2.5);
        var softened = Scores(model);
        Assert.True(softened.Zip(plain).All(p => p.First.Max() <= p.Second.Max() + 1e-6), "T > 1 must lower the top probability");
        Assert.Contains(softened.Zip(plain), p => p.Second.Max() - p.First.Max() > 1e-3);

        var path = Path.Combine(Path.GetTempPath(), $"temperature-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var serving = new MLContext(seed: 1);
            Persistence.LinearAttentionModel.Register(serving);
            var loaded = serving.Model.Load(path, out _);
            Assert.Equal(2.5, Classifier(loaded).Temperature);
            var again = Scores(loaded);
            for (int i = 0; i < again.Length; i++)
                for (int j = 0; j < again[i].Length; j++) Assert.Equal(softened[i][j], again[i][j], 5);
            (loaded as IDisposable)?.Dispose();
        }
        finally
        {
            File.Delete(path);
            (model as IDisposable)?.Dispose();
        }
        // A model saved before temperatures existed has none in its configuration: T = 1.
        Assert.Equal(1.0, SmallDataDefaults.TemperatureOf(new EncoderConfig()));
    }

    private sealed class Scored
    {
        [VectorType] public float[] Score { get; set; } = Array.Empty<float>();
    }

    [Theory]
    [InlineData("ValidationFraction", -0.1)]
    [InlineData("ValidationFraction", 0.7)]
    [InlineData("ValidationFraction", double.NaN)]
    [InlineData("LabelSmoothing", 1.0)]
    [InlineData("LabelSmoothing", -0.2)]
    [InlineData("EarlyStoppingPatience", -1)]
    [InlineData("WeightDecay", -0.5)]
    [InlineData("Dropout", 1.0)]
    [InlineData("MaxEpochs", 0)]
    public void BadSmallDataOptionsNameTheOptionAndTheFix(string option, double value)
    {
        var ml = new MLContext(seed: 1);
        var o = Small();
        switch (option)
        {
            case "ValidationFraction": o.ValidationFraction = value; break;
            case "LabelSmoothing": o.LabelSmoothing = value; break;
            case "EarlyStoppingPatience": o.EarlyStoppingPatience = (int)value; break;
            case "WeightDecay": o.WeightDecay = value; break;
            case "Dropout": o.Dropout = value; break;
            case "MaxEpochs": o.MaxEpochs = (int)value; break;
        }
        var data = ml.Data.LoadFromEnumerable(Sentences(40));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Transforms.LinearAttention.TextClassification(o)).Fit(data));
        output.WriteLine(e.Message);
        Assert.Equal(option, e.ParamName);
        Assert.StartsWith(option + " must ", e.Message);
    }
}

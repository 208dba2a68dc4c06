using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class SequenceRegressionTests(ITestOutputHelper output)
{
    private static SequenceRegressionOptions Tiny() => new()
    {
        ModelDimension = 32, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, Dropout = 0.05,
        MaxSequenceLength = 128, BatchSize = 32, MaxEpochs = 3, LearningRate = 2e-3, LogEverySteps = 0, CpuThreads = 1,
    };

    [SharedDataFact("stsb")]
    public void TextPairRegressionOnStsbHasPositiveRSquared()
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var pairs = SharedData.Stsb("train", 3400);
        var train = ml.Data.LoadFromEnumerable(pairs.Take(3000));
        var test = ml.Data.LoadFromEnumerable(SharedData.Stsb("test", 600));
        var o = Tiny();
        // From-scratch embeddings overfit 3,000 pairs quickly: early stopping on held-out rows restores the best epoch.
        o.MaxEpochs = 6;
        o.ValidationSet = ml.Data.LoadFromEnumerable(pairs.Skip(3000));
        o.EarlyStoppingPatience = 1;
        var estimator = ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Score", textColumnNames: new[] { "Sentence1", "Sentence2" },
            scoreColumnName: "Predicted", options: o);
        using var model = estimator.Fit(train);
        var metrics = ml.Regression.Evaluate(model.Transform(test), labelColumnName: "Score", scoreColumnName: "Predicted");
        var report = model.TrainingReport!;
        output.WriteLine($"STS-B test: R² {metrics.RSquared:F3}, RMSE {metrics.RootMeanSquaredError:F3}, {sw.Elapsed.TotalSeconds:F1}s; " +
                         $"{report.Epochs} epochs, best validation RMSE {report.BestValidationMetric:F3} at epoch {report.BestEpoch}");
        Assert.NotNull(report.BestEpoch);
        Assert.True(metrics.RSquared > 0, $"R² {metrics.RSquared:F3} should be above 0 (better than predicting the mean)");
    }

    /// <summary>Synthetic sensor windows: 2 channels, 16–48 steps; the target needs the whole sequence.</summary>
    internal static List<SensorWindow> Sensors(int n, int seed)
    {
        var rng = new Random(seed);
        var rows = new List<SensorWindow>();
        for (int i = 0; i < n; i++)
        {
            int t = 16 + rng.Next(33);
            double amplitude = 0.5 + 2 * rng.NextDouble(), slope = rng.NextDouble() * 2 - 1, phase = rng.NextDouble() * 6.28;
            var values = new float[t * 2];
            for (int s = 0; s < t; s++)
            {
                values[2 * s] = (float)(amplitude * Math.Sin(0.7 * s + phase) + 0.1 * (rng.NextDouble() - 0.5));
                values[2 * s + 1] = (float)(slope * s / t + 0.1 * (rng.NextDouble() - 0.5));
            }
            rows.Add(new SensorWindow { Readings = values, Target = (float)(amplitude + 2 * slope) });
        }
        return rows;
    }

    [Fact]
    public void NumericSequenceRegressionLearnsSensorWindows()
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(Sensors(640, 1));
        var test = ml.Data.LoadFromEnumerable(Sensors(200, 2));
        var o = Tiny();
        o.MaxEpochs = 4;
        o.Position = Encoder.PositionEncoding.Learned;
        using var model = ml.Regression.Trainers.LinearAttentionSequenceRegression(labelColumnName: "Target", sequenceColumnName: "Readings",
            sequenceFeatureCount: 2, options: o).Fit(train);
        var metrics = ml.Regression.Evaluate(model.Transform(test), labelColumnName: "Target");
        output.WriteLine($"sensors: R² {metrics.RSquared:F3}, RMSE {metrics.RootMeanSquaredError:F3}, {sw.Elapsed.TotalSeconds:F1}s");
        Assert.True(metrics.RSquared > 0.3, $"R² {metrics.RSquared:F3} on the numeric-sequence task");
    }

    [Fact]
    public void Bf16MixedPrecisionTrainsWithFp32MasterWeights()
    {
        // The CUDA default (Precision.Auto there); forced here so that the CPU exercises the same path.
        var ml = new MLContext(seed: 1);
        var o = Tiny();
        o.MaxEpochs = 4;
        o.Position = Encoder.PositionEncoding.Learned;
        o.Precision = Training.TrainingPrecision.BFloat16;
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        using var model = ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Target", sequenceColumnName: "Readings",
            sequenceFeatureCount: 2, options: o).Fit(ml.Data.LoadFromEnumerable(Sensors(640, 1)));
        var metrics = ml.Regression.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(Sensors(200, 2))), labelColumnName: "Target");
        output.WriteLine($"sensors, bf16 mixed precision: R² {metrics.RSquared:F3}");
        Assert.Contains(log, l => l.Contains("bf16 mixed precision"));
        Assert.All(model.Model.parameters(), p => Assert.Equal(TorchSharp.torch.ScalarType.Float32, p.dtype));
        Assert.True(metrics.RSquared > 0.3, $"R² {metrics.RSquared:F3} in bf16 mixed precision");
    }

    public sealed class SensorWindow
    {
        [VectorType] public float[] Readings { get; set; } = Array.Empty<float>();
        public float Target { get; set; }
    }
}

using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// How far scoring at a lower precision lands from fp32 on real rows: a classifier of the benchmark's shape is trained
/// on AG News rows (../shared/data, or a copy given by --data-folder), then the same held-out rows are scored at fp32
/// and at each other precision through <c>Transform</c>. Reported: the share of rows whose predicted class changes, the
/// largest and the mean absolute difference of a class probability, and the accuracy at each precision.
/// </summary>
public static class InferenceAgreement
{
    /// <summary>One (mechanism, precision) comparison with fp32.</summary>
    public sealed record Point(string Mechanism, string Precision, int Rows, double? ChangedShare, double? MaxScoreDifference,
        double? MeanScoreDifference, double? Accuracy, double? Fp32Accuracy, string? Status);

    /// <summary>Probabilities [rows][classes] and predicted keys of scoring <paramref name="data"/> at <paramref name="precision"/>.</summary>
    public static (float[][] Scores, uint[] Predicted) Score(ITransformer model, IDataView data, InferencePrecision precision)
    {
        foreach (var t in Persistence.LinearAttentionModel.TransformersIn(model)) t.Precision = precision;
        var scored = model.Transform(data);
        var scores = scored.GetColumn<float[]>("Score").ToArray();
        var predicted = scored.GetColumn<uint>("PredictedLabel").ToArray();
        return (scores, predicted);
    }

    /// <summary>Compares <paramref name="other"/> with <paramref name="fp32"/> row by row (same rows, same order).</summary>
    public static (double ChangedShare, double MaxDifference, double MeanDifference) Compare((float[][] Scores, uint[] Predicted) fp32, (float[][] Scores, uint[] Predicted) other)
    {
        if (fp32.Scores.Length != other.Scores.Length) throw new InvalidOperationException("The two scorings returned different row counts.");
        int changed = 0;
        double max = 0, sum = 0;
        long count = 0;
        for (int i = 0; i < fp32.Scores.Length; i++)
        {
            if (fp32.Predicted[i] != other.Predicted[i]) changed++;
            for (int c = 0; c < fp32.Scores[i].Length; c++)
            {
                double d = Math.Abs(fp32.Scores[i][c] - other.Scores[i][c]);
                max = Math.Max(max, d);
                sum += d;
                count++;
            }
        }
        return (fp32.Scores.Length == 0 ? 0 : changed / (double)fp32.Scores.Length, max, count == 0 ? 0 : sum / count);
    }

    /// <summary>Trains one model of the benchmark's shape for <paramref name="mechanism"/> and compares every precision with fp32.</summary>
    public static List<Point> Measure(TrainingBenchmarkOptions o, BenchmarkMechanism mechanism, Encoder.PositionEncoding position,
        IReadOnlyList<InferencePrecision> precisions, bool cuda, TextWriter log)
    {
        var others = precisions.Where(p => p != InferencePrecision.Float32).ToList();
        var points = new List<Point>();
        try
        {
            var data = QualityData.Load("ag-news", o.DataFolder, o.AgreementTrainRows, o.AgreementRows, seed: 1);
            var ml = new MLContext(seed: 1) { GpuDeviceId = cuda ? 0 : null, FallbackToCpu = false };
            var options = TrainingBenchmark.EstimatorOptions(o, mechanism, position, t: 256, b: 32);
            options.TextColumnNames = data.TextColumns;
            options.MaxEpochs = 2;
            options.LearningRate = 5e-4;
            options.WarmupRatio = 0.1;
            options.Dropout = 0.1;
            options.LogEverySteps = 0;
            options.InferenceBatchSize = 64;
            var key = ml.Transforms.Conversion.MapValueToKey("Label", nameof(QualityRow.Label)).Fit(ml.Data.LoadFromEnumerable(data.Train));
            var train = key.Transform(ml.Data.LoadFromEnumerable(data.Train));
            var test = key.Transform(ml.Data.LoadFromEnumerable(data.Test));
            using var model = ml.MulticlassClassification.Trainers.LinearAttentionTextClassification(options).Fit(train);
            var labels = test.GetColumn<uint>("Label").ToArray();
            var fp32 = Score(model, test, InferencePrecision.Float32);
            double fp32Accuracy = Accuracy(fp32.Predicted, labels);
            foreach (var precision in others)
            {
                var other = Score(model, test, precision);
                var (changed, max, mean) = Compare(fp32, other);
                var name = ScoringPrecision.Name(model.EffectivePrecision);
                points.Add(new Point(mechanism.Label, name, labels.Length, changed, max, mean, Accuracy(other.Predicted, labels), fp32Accuracy, null));
                log.WriteLine($"{mechanism.Label,-34} {name} vs fp32 on {labels.Length} AG News rows: {changed:P2} of rows change class, " +
                              $"largest probability difference {max:F4} (mean {mean:E1}); accuracy {Accuracy(other.Predicted, labels):P1} vs {fp32Accuracy:P1}");
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string status = TrainingBenchmark.IsOutOfMemory(e) ? "OOM" : "error: " + TrainingBenchmark.FirstLine(e);
            points.AddRange(others.Select(p => new Point(mechanism.Label, ScoringPrecision.Name(p), 0, null, null, null, null, null, status)));
            log.WriteLine($"{mechanism.Label,-34} agreement not measured: {status}");
        }
        finally
        {
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        }
        return points;
    }

    private static double Accuracy(uint[] predicted, uint[] labels) => predicted.Zip(labels).Count(p => p.First == p.Second) / (double)Math.Max(1, labels.Length);
}

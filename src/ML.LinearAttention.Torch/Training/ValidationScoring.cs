using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>One pass of a model over validation rows.</summary>
/// <param name="Metric">Accuracy (classification) or RMSE in label units (regression).</param>
/// <param name="LogLoss">Mean cross-entropy of the softmax probabilities (classification), else null.</param>
/// <param name="Rows">Rows scored.</param>
/// <param name="CalibratedLogLoss">Log-loss after the best temperature for these rows (classification), else null:
/// how good the model's ranking of the classes is, whatever its confidence.</param>
public sealed record ValidationScore(double Metric, double? LogLoss, long Rows, double? CalibratedLogLoss = null);

/// <summary>
/// Scores validation rows (accuracy and log-loss, or RMSE) and fits the temperature that calibrates a classifier's
/// probabilities on them: softmax(logits / T) with one scalar T chosen to minimise the validation log-loss. A network
/// trained to a low training loss is overconfident; dividing its logits by T &gt; 1 softens the probabilities without
/// changing any prediction (the arg-max is the same), which is why it is safe to apply after early stopping.
/// </summary>
public static class ValidationScoring
{
    /// <summary>Temperatures searched (log scale). Outside this range the validation set is too small or degenerate to trust.</summary>
    public const double MinTemperature = 0.05, MaxTemperature = 20;

    /// <summary>Accuracy and log-loss (classification) or RMSE (regression) of <paramref name="model"/> on a stream.</summary>
    public static ValidationScore Score(TrainableModel model, CollateSpec spec, IEnumerable<Example> rows, int batchSize, long maxBatchTokens, Device device, Action? checkCancel = null)
    {
        var logits = Collect(model, spec, rows, batchSize, maxBatchTokens, device, checkCancel, out var labels, out double squaredError);
        long n = labels.Count;
        if (n == 0) return new ValidationScore(double.NaN, null, 0);
        if (spec.Labels != LabelKind.Key) return new ValidationScore(Math.Sqrt(squaredError / n), null, n);
        long correct = 0;
        for (int i = 0; i < n; i++)
            if (ArgMax(logits[i]) == labels[i]) correct++;
        var (_, before, after) = BestTemperature(logits, labels);
        return new ValidationScore((double)correct / n, before, n, after);
    }

    /// <summary>
    /// The temperature T that minimises the log-loss of softmax(logits / T) over the validation rows, and the log-loss
    /// before (T = 1) and after. The log-loss is convex in 1/T, so a golden-section search over log T finds the optimum.
    /// </summary>
    public static (double Temperature, double LogLossBefore, double LogLossAfter, long Rows) FitTemperature(TrainableModel model, CollateSpec spec,
        IEnumerable<Example> rows, int batchSize, long maxBatchTokens, Device device, Action? checkCancel = null)
    {
        if (spec.Labels != LabelKind.Key) throw new InvalidOperationException("Temperature scaling applies to classification (key labels) only.");
        var logits = Collect(model, spec, rows, batchSize, maxBatchTokens, device, checkCancel, out var labels, out _);
        if (labels.Count == 0) return (1.0, double.NaN, double.NaN, 0);
        var (t, before, after) = BestTemperature(logits, labels);
        return (t, before, after, labels.Count);
    }

    /// <summary>The temperature of least log-loss over <paramref name="logits"/>, the log-loss at T = 1 and at that temperature.</summary>
    public static (double Temperature, double LogLossBefore, double LogLossAfter) BestTemperature(IReadOnlyList<float[]> logits, IReadOnlyList<long> labels)
    {
        double before = LogLoss(logits, labels, 1.0);
        double lo = Math.Log(MinTemperature), hi = Math.Log(MaxTemperature);
        double golden = (Math.Sqrt(5) - 1) / 2;
        double a = hi - golden * (hi - lo), b = lo + golden * (hi - lo);
        double fa = LogLoss(logits, labels, Math.Exp(a)), fb = LogLoss(logits, labels, Math.Exp(b));
        for (int i = 0; i < 60; i++)
        {
            if (fa < fb) { hi = b; b = a; fb = fa; a = hi - golden * (hi - lo); fa = LogLoss(logits, labels, Math.Exp(a)); }
            else { lo = a; a = b; fa = fb; b = lo + golden * (hi - lo); fb = LogLoss(logits, labels, Math.Exp(b)); }
        }
        double t = Math.Exp((lo + hi) / 2);
        double after = LogLoss(logits, labels, t);
        // Never worse than leaving the probabilities alone.
        return after <= before ? (t, before, after) : (1.0, before, before);
    }

    /// <summary>Mean cross-entropy of softmax(logits / temperature) against the labels (log-sum-exp, numerically stable).</summary>
    public static double LogLoss(IReadOnlyList<float[]> logits, IReadOnlyList<long> labels, double temperature)
    {
        double sum = 0;
        for (int i = 0; i < logits.Count; i++)
        {
            var z = logits[i];
            double max = double.NegativeInfinity;
            foreach (var v in z) max = Math.Max(max, v / temperature);
            double exp = 0;
            foreach (var v in z) exp += Math.Exp(v / temperature - max);
            sum += max + Math.Log(exp) - z[labels[i]] / temperature;
        }
        return sum / Math.Max(1, logits.Count);
    }

    private static int ArgMax(float[] z)
    {
        int best = 0;
        for (int j = 1; j < z.Length; j++) if (z[j] > z[best]) best = j;
        return best;
    }

    /// <summary>Logits (classification) on the CPU with their labels; for regression only the squared error is summed.</summary>
    private static List<float[]> Collect(TrainableModel model, CollateSpec spec, IEnumerable<Example> rows, int batchSize, long maxBatchTokens,
        Device device, Action? checkCancel, out List<long> labels, out double squaredError)
    {
        bool wasTraining = model.training;
        model.eval();
        var logits = new List<float[]>();
        labels = new List<long>();
        squaredError = 0;
        try
        {
            using var _ = no_grad();
            foreach (var batchRows in Batching.Bucketed(rows, batchSize, maxBatchTokens, batchSize * 16, null))
            {
                checkCancel?.Invoke();
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(batchRows, device, spec.PadId, spec.NumericFeatures, spec.SideLength, spec.SideFill, spec.Labels);
                var output = model.Forward(batch).to(ScalarType.Float32);
                if (spec.Labels == LabelKind.Key)
                {
                    var flat = output.cpu().data<float>().ToArray();
                    int classes = (int)output.shape[^1];
                    var y = batch.Labels!.cpu().to(ScalarType.Int64).data<long>().ToArray();
                    for (int i = 0; i < y.Length; i++)
                    {
                        logits.Add(flat.AsSpan(i * classes, classes).ToArray());
                        labels.Add(y[i]);
                    }
                }
                else
                {
                    squaredError += (model.DestandardizeTarget(output.squeeze(-1)) - batch.Labels!).square().sum().item<float>();
                    for (int i = 0; i < batchRows.Count; i++) labels.Add(0);
                }
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return logits;
    }
}

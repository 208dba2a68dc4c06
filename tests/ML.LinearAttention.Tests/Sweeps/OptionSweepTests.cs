using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Sweeps;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Sweeps;

public sealed class OptionSweepTests(ITestOutputHelper output)
{
    private static TextClassificationOptions Micro()
    {
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        return o;
    }

    [Fact]
    public void SearchSpaceIsReadFromTheOptionAttributes()
    {
        var space = SweepParameter.Read(typeof(TextClassificationOptions)).ToDictionary(p => p.Name);
        var lr = space["LearningRate"];
        Assert.Equal((1e-5, 1e-2, true), (lr.Min!.Value, lr.Max!.Value, lr.LogScale));
        Assert.Equal(typeof(double), lr.ValueType);
        Assert.Equal(new object[] { "linear", "hedgehog", "softmax" }, space["Attention"].Choices);
        Assert.Equal(new object[] { 1, 2, 4, 8 }, space["NumberOfHeads"].Choices);
        Assert.True(space["ModelDimension"].IsInteger);
        Assert.DoesNotContain("CheckpointDirectory", space.Keys);

        var rng = new Random(1);
        var draws = Enumerable.Range(0, 300).Select(_ => (double)lr.Sample(rng)).ToList();
        Assert.All(draws, d => Assert.InRange(d, 1e-5, 1e-2));
        Assert.InRange(draws.Count(d => d < 3.2e-4), 100, 200); // log-uniform: half the draws below the geometric middle
        Assert.All(Enumerable.Range(0, 100).Select(_ => space["ModelDimension"].Sample(rng)), v => Assert.InRange(Assert.IsType<int>(v), 16, 1024));

        var grid = lr.Grid(3).Cast<double>().ToList();
        Assert.Equal(1e-5, grid[0], 12);
        Assert.Equal(Math.Sqrt(1e-5 * 1e-2), grid[1], 9);
        Assert.Equal(1e-2, grid[2], 12);
        Assert.Equal(new object[] { 1, 12, 24 }, space["NumberOfLayers"].Grid(3)); // integer ranges stay integers

        // A nullable option (MaxEpochs, null = chosen by Fit) is searched over its integers and set as one.
        var epochs = space["MaxEpochs"];
        Assert.True(epochs.IsInteger);
        var o = new TextClassificationOptions();
        epochs.Set(o, 4.6);
        Assert.Equal(5, o.MaxEpochs);
    }

    [Fact]
    public void TrialsAreSeededGridIsTheProductAndOptionsAreMadeConsistent()
    {
        var ml = new MLContext(seed: 1);
        IEstimator<ITransformer> Pipeline(TextClassificationOptions o) => ml.Transforms.LinearAttention.TextClassification(o);
        var grid = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(), new SweepOptions
        {
            Strategy = SweepStrategy.Grid, Parameters = new[] { "Attention", "NumberOfLayers" }, Candidates = { ["NumberOfLayers"] = new object[] { 1, 2 } },
        });
        Assert.Equal(6, grid.PlanTrials().Count);

        var random = new SweepOptions { MaxTrials = 5, Seed = 3 };
        var a = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(), random).PlanTrials();
        var b = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(), random).PlanTrials();
        Assert.Equal(5, a.Count);
        Assert.Equal(a.Select(d => string.Join(",", d.Values)), b.Select(d => string.Join(",", d.Values)));
        Assert.Equal(Micro().LearningRate, (double)a[0]["LearningRate"]); // the base options are the first (baseline) trial

        var sweep = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(),
            new SweepOptions { Parameters = new[] { "ModelDimension", "NumberOfHeads" } });
        var o = sweep.Apply(new Dictionary<string, object> { ["ModelDimension"] = 37, ["NumberOfHeads"] = 4 });
        Assert.Equal(40, o.ModelDimension); // a multiple of 2 × heads (heads divide it, rotary needs even head sizes)
        Assert.Equal(16, Micro().ModelDimension); // the base options are never changed

        var unknown = Assert.Throws<ArgumentException>(() => new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(),
            new SweepOptions { Parameters = new[] { "BatchSizes" } }));
        Assert.Contains("sweepable members", unknown.Message);
        Assert.Contains("LearningRate", unknown.Message);
    }

    [Fact]
    public void CrossValidatedTrialsArePrunedAndTheSweepStopsEarly()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(24));
        // Real folds and real (tiny) training; the metric is scripted per learning rate so the sweep's decisions are exact.
        var script = new Dictionary<double, double[]> { [1e-3] = new[] { 0.8, 0.8 }, [2e-3] = new[] { 0.5, 0.9 }, [3e-3] = new[] { 0.79, 0.6 }, [4e-3] = new[] { 0.9, 0.9 } };
        double current = 0; int fold = 0; int fits = 0;
        IEstimator<ITransformer> Pipeline(TextClassificationOptions o)
        {
            if (o.LearningRate != current) { current = o.LearningRate; fold = 0; }
            fits++;
            o.MaxSteps = 1;
            return ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));
        }
        var metric = new SweepMetric("Scripted", true, (_, scored) => { Assert.NotNull(scored.Schema.GetColumnOrNull("Score")); return script[current][fold++]; });
        var progress = new List<SweepTrial>();
        var sweep = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, metric, new SweepOptions
        {
            Strategy = SweepStrategy.Grid, Folds = 2, Parameters = new[] { "LearningRate" }, Candidates = { ["LearningRate"] = new object[] { 1e-3, 2e-3, 3e-3, 4e-3 } },
            EarlyStoppingTrials = 2, Progress = new Resilience.CheckpointTests.SyncProgress<SweepTrial>(progress.Add),
        });
        var result = sweep.Run(data);
        output.WriteLine(result.ToMarkdown());
        Assert.Equal(3, result.Trials.Count); // trial 3 (the best one) never runs: two trials in a row did not improve
        Assert.Contains("early stop", result.StopReason);
        Assert.True(result.Trials[1].Pruned); // 0.5 < 0.8, the best trial's weakest fold: its second fold is not trained
        Assert.Single(result.Trials[1].FoldMetrics);
        Assert.True(result.Trials[2].Pruned);
        Assert.Equal(2 + 1 + 1, fits);
        Assert.Equal(0, result.Best!.Index);
        Assert.Equal(0.8, result.Best.Metric, 9);
        Assert.Equal(1e-3, result.BestOptions!.LearningRate);
        Assert.Equal(3, progress.Count);
    }

    [Fact]
    public void AFailingTrialIsRecordedAndTheRealMetricWorks()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(24));
        IEstimator<ITransformer> Pipeline(TextClassificationOptions o)
            => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));
        var result = new OptionSweep<TextClassificationOptions>(ml, Micro(), Pipeline, SweepMetric.MicroAccuracy(), new SweepOptions
        {
            Strategy = SweepStrategy.Grid, Folds = 2, Parameters = new[] { "Attention" }, Candidates = { ["Attention"] = new object[] { "no-such-mechanism", "linear" } },
        }).Run(data);
        output.WriteLine(result.ToMarkdown());
        Assert.Contains("no-such-mechanism", result.Trials[0].Error);
        Assert.Equal(1, result.Best!.Index);
        Assert.Equal(2, result.Best.FoldMetrics.Count);
        Assert.All(result.Best.FoldMetrics, m => Assert.InRange(m, 0, 1));
        Assert.Equal("linear", result.BestOptions!.Attention);
    }
}

using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

/// <summary>A base model trained once (full), whose weights every fine-tuning test starts from.</summary>
public sealed class BaseWeightsFixture : IDisposable
{
    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("la-ft-").FullName;
    public string WeightsPath => Path.Combine(Directory, "base.weights");
    public Dictionary<string, Tensor> State { get; }

    public BaseWeightsFixture()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(96));
        var model = FineTuningEstimatorTests.Pipeline(ml, FineTuningEstimatorTests.Options()).Fit(train);
        var transformer = (TextClassificationTransformer)model.LastTransformer;
        transformer.SaveWeights(WeightsPath);
        State = transformer.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        model.Dispose();
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

public sealed class FineTuningEstimatorTests(BaseWeightsFixture fixture, ITestOutputHelper output) : IClassFixture<BaseWeightsFixture>
{
    internal static TextClassificationOptions Options()
    {
        var o = TextClassificationTests.Tiny();
        o.ModelDimension = 16;
        o.NumberOfLayers = 2;
        o.FeedForwardMultiplier = 1;
        o.MaxEpochs = 1;
        o.BatchSize = 16;
        return o;
    }

    internal static EstimatorChain<TextClassificationTransformer> Pipeline(MLContext ml, TextClassificationOptions o)
        => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    private static bool IsNormOrBias(string key) => key.EndsWith(".bias", StringComparison.Ordinal) || key.Contains("norm", StringComparison.Ordinal);
    private static bool IsHead(string key) => key.StartsWith("head_", StringComparison.Ordinal);

    /// <summary>Whether a weight of the base model should have moved under <paramref name="method"/>.</summary>
    private static bool ShouldChange(string method, string key) => method switch
    {
        "full" => !key.EndsWith("_mean", StringComparison.Ordinal) && !key.EndsWith("_std", StringComparison.Ordinal),
        "freeze_layers" => !key.StartsWith("token_embedding", StringComparison.Ordinal) && !key.StartsWith("blocks.0.", StringComparison.Ordinal) && !key.Contains("_mean") && !key.Contains("_std"),
        "bitfit" => IsNormOrBias(key) || IsHead(key),
        "lora" => IsHead(key) || System.Text.RegularExpressions.Regex.IsMatch(key, @"mixer\.[qkvo]_proj\.weight$"), // merged into W after training
        _ => false, // linear_probe, moment_probing, psrp: the encoder is frozen (the old head is gone)
    };

    [Theory]
    [InlineData("full")]
    [InlineData("freeze_layers")]
    [InlineData("linear_probe")]
    [InlineData("bitfit")]
    [InlineData("lora")]
    [InlineData("moment_probing")]
    [InlineData("psrp")]
    public void EveryMethodTrainsWhatItShouldAndRoundTripsThroughModelSaveLoad(string method)
    {
        var ml = new MLContext(seed: 2);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.Message); };
        var losses = new List<double>();
        var o = Options();
        o.InitialWeightsFile = fixture.WeightsPath;
        o.FineTuning = method;
        o.FineTuningOptions = FineTuningRegistryTests.SmallOptions(method);
        o.MaxEpochs = 4;
        o.Progress = new SyncProgress(p => { if (p.ValidationMetric is null) losses.Add(p.Loss); });
        var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(96));
        var model = Pipeline(ml, o).Fit(train);
        var transformer = model.LastTransformer;

        var line = Assert.Single(log, l => l.Contains($"Fine-tuning '{method}'", StringComparison.Ordinal));
        output.WriteLine(line);
        output.WriteLine("epoch losses: " + string.Join(", ", losses.Select(l => l.ToString("F4"))));
        Assert.Contains("parameters trainable", line);
        Assert.True(losses[^1] < losses[0], $"{method}: the training loss did not fall ({string.Join(", ", losses)})");

        var fitted = transformer.Model.state_dict();
        int changed = 0, frozen = 0;
        foreach (var (key, before) in fixture.State)
        {
            if (!fitted.TryGetValue(key, out var after)) { Assert.True(IsHead(key), $"{method}: {key} vanished"); continue; }
            bool moved = !after.eq(before).all().item<bool>();
            if (ShouldChange(method, key)) { Assert.True(moved, $"{method}: {key} should have trained"); changed++; }
            else { Assert.False(moved, $"{method}: {key} should be frozen"); frozen++; }
        }
        output.WriteLine($"{method}: {changed} base tensors trained, {frozen} frozen; fine-tuning spec {FineTuningRegistry.SpecOf(transformer.Configuration)}");
        if (method is "linear_probe" or "moment_probing" or "psrp") Assert.Contains(fitted.Keys, k => k.StartsWith("probe_head.", StringComparison.Ordinal));
        if (method == "lora") Assert.DoesNotContain(fitted.Keys, k => k.Contains("lora_")); // merged after training

        AssertRoundTrip(ml, model, train, method);
    }

    [Fact]
    public void UnmergedLoraInBFloat16MixedPrecisionTrainsAndRoundTripsWithItsAdapters()
    {
        var ml = new MLContext(seed: 3);
        var o = Options();
        o.InitialWeightsFile = fixture.WeightsPath;
        o.FineTuning = "lora";
        o.FineTuningOptions = new LoraOptions { Rank = 2, Alpha = 4, MergeAfterTraining = false, Targets = new[] { "q_proj", "v_proj", "ffn_in" } };
        o.Precision = TrainingPrecision.BFloat16;
        o.MaxEpochs = 2;
        var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(96));
        var model = Pipeline(ml, o).Fit(train);
        var layers = LoraLayers.Layers(model.LastTransformer.Model);
        Assert.Equal(6, layers.Count);
        Assert.All(layers, l => Assert.True(l.Layer.LoraB.abs().sum().item<float>() > 0, $"{l.Name}: B did not train"));
        Assert.Contains(model.LastTransformer.Model.state_dict().Keys, k => k.EndsWith("q_proj.lora_A", StringComparison.Ordinal));
        AssertRoundTrip(ml, model, train, "lora unmerged bf16");
    }

    [Fact]
    public void UnknownMethodOrWrongOptionsFailBeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(8));
        var o = Options();
        o.FineTuning = "prefix_tuning";
        var unknown = Assert.ThrowsAny<ArgumentException>(() => Pipeline(ml, o).Fit(train));
        Assert.Contains("moment_probing", unknown.Message);
        o.FineTuning = "lora";
        o.FineTuningOptions = new Microsoft.ML.LinearAttention.FineTuning.BitFit.BitFitOptions();
        Assert.Contains("LoraOptions", Assert.ThrowsAny<ArgumentException>(() => Pipeline(ml, o).Fit(train)).Message);
    }

    private void AssertRoundTrip(MLContext ml, TransformerChain<TextClassificationTransformer> model, IDataView train, string what)
    {
        var path = Path.Combine(fixture.Directory, $"{what.Replace(' ', '_')}.zip");
        ml.Model.Save(model, train.Schema, path);
        var test = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(40).Skip(20));
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToList();
        var serving = new MLContext();
        LinearAttentionModel.Register(serving);
        var loaded = serving.Model.Load(path, out _);
        var actual = loaded.Transform(test).GetColumn<float[]>("Score").ToList();
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], actual[i]); // bit-identical on the CPU
        (loaded as IDisposable)?.Dispose();
        model.Dispose();
    }
}

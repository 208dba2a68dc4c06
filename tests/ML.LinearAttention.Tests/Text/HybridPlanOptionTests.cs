using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>The estimators' HybridPlan text option resolves to one mechanism per layer.</summary>
public sealed class HybridPlanOptionTests
{
    [Fact]
    public void ThreeToOnePutsSoftmaxOnEveryFourthLayer()
    {
        var o = new TextClassificationOptions { Attention = "hedgehog", NumberOfLayers = 8, HybridPlan = "3:1" };
        var layers = LinearAttentionEstimator<TextClassificationTransformer>.ResolveLayerPlan(o)!;
        Assert.Equal(8, layers.Count);
        Assert.Equal(new[] { 3, 7 }, layers.Select((l, i) => (l, i)).Where(x => x.l.Name == "softmax").Select(x => x.i));
        Assert.All(layers.Where(l => l.Name != "softmax"), l => Assert.Equal("hedgehog", l.Name));
    }

    [Fact]
    public void NoneOrNullLeavesEveryLayerToTheAttentionOption()
    {
        Assert.Null(LinearAttentionEstimator<TextClassificationTransformer>.ResolveLayerPlan(new TextClassificationOptions { HybridPlan = "none" }));
        Assert.Null(LinearAttentionEstimator<TextClassificationTransformer>.ResolveLayerPlan(new TextClassificationOptions()));
    }

    [Fact]
    public void BadPlansAndConflictingOptionsAreNamed()
    {
        var bad = Assert.ThrowsAny<ArgumentException>(() => LinearAttentionEstimator<TextClassificationTransformer>.ResolveLayerPlan(
            new TextClassificationOptions { HybridPlan = "3:x" }));
        Assert.Contains("HybridPlan", bad.Message);
        Assert.Contains("3:x", bad.Message);
        var both = Assert.ThrowsAny<ArgumentException>(() => LinearAttentionEstimator<TextClassificationTransformer>.ResolveLayerPlan(
            new TextClassificationOptions { HybridPlan = "3:1", LayerPlan = new[] { new LayerMixer("softmax") } }));
        Assert.Contains("set one of them", both.Message);
    }

    [Fact]
    public void AHybridEncoderTrainsThroughTheEstimator()
    {
        var ml = new MLContext(seed: 1);
        var rows = Enumerable.Range(0, 64).Select(i => new Row { Text = i % 2 == 0 ? "great product works well" : "broken refund please", Label = i % 2 == 0 ? "pos" : "neg" });
        var data = ml.Data.LoadFromEnumerable(rows);
        var o = TextClassificationTests.Tiny();
        o.NumberOfLayers = 2;
        o.HybridPlan = "1:1";
        o.MaxEpochs = 2;
        var model = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(data));
        Assert.True(metrics.MicroAccuracy > 0.9, $"accuracy {metrics.MicroAccuracy}");
    }

    private sealed class Row
    {
        public string Text { get; set; } = "";
        public string Label { get; set; } = "";
    }
}

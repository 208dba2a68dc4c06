using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Hybrid;
using Microsoft.ML.LinearAttention.Attention.Lolcats;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public class HybridPlanTests
{
    private static string Layout(HybridPlan plan, int layers, string baseName = "hedgehog")
        => string.Join(" ", plan.Resolve(layers, baseName).Select(l => l.Name switch
        {
            "softmax" => "S",
            "swa" => "W" + ((SlidingWindowOptions)l.Options).Window,
            var n when n == baseName => "-",
            var n => n,
        }));

    [Theory]
    [InlineData("3:1", 12, "- - - S - - - S - - - S")]
    [InlineData("2:2", 8, "- - S S - - S S")]
    [InlineData("0:1", 3, "S S S")]
    [InlineData("softmax@0,-1", 6, "S - - - - S")]
    [InlineData("full@2", 4, "- - S -")]
    [InlineData("2,5", 6, "- - S - - S")]
    [InlineData("swa:512@0,2", 4, "W512 - W512 -")]
    [InlineData("3:1;swa:128@3,0", 8, "W128 - - W128 - - - S")]
    [InlineData(" 3 : 1 ; SWA : 64 @ 1 ", 4, "- W64 - S")]
    [InlineData("none", 3, "- - -")]
    [InlineData("", 2, "- -")]
    public void ParsesRatiosListsAndWindows(string spec, int layers, string expected)
        => Assert.Equal(expected, Layout(HybridPlan.Parse(spec), layers));

    [Fact]
    public void RatioPutsSoftmaxLastInEachGroupZeroBased()
    {
        var softmax = HybridPlan.Ratio(3, 1).Resolve(8, "linear").Where(l => l.Name == "softmax").Select(l => l.LayerIndex);
        Assert.Equal(new[] { 3, 7 }, softmax);
    }

    [Theory]
    [InlineData(" 3 : 1 ; full@ -1 ", "3:1;softmax@-1")]
    [InlineData("SWA:512@0,2", "swa:512@0,2")]
    [InlineData("swa{\"Window\":512,\"BlockSize\":64}@1", "swa:512@1")]
    [InlineData("None", "none")]
    public void FormatsCanonically(string spec, string canonical)
    {
        var plan = HybridPlan.Parse(spec);
        Assert.Equal(canonical, plan.ToString());
        Assert.Equal(plan, HybridPlan.Parse(plan.ToString()));
    }

    [Fact]
    public void ProgrammaticPlansRoundTripThroughTextIncludingCustomOptions()
    {
        var plan = HybridPlan.Ratio(3, 1)
            .ThenSlidingWindowAt(512, 0)
            .ThenMechanismAt("lolcats", new LolcatsOptions { Window = 32, InitWindowFactor = -1.5, Terraced = true }, 2, -2)
            .ThenMechanismAt("hedgehog", null, 5)
            .Then(HybridPlan.SoftmaxAt(-1));
        var text = plan.ToString();
        Assert.StartsWith("3:1;swa:512@0;lolcats{", text);
        Assert.EndsWith("}@2,-2;hedgehog@5;softmax@-1", text);
        var back = HybridPlan.Parse(text);
        Assert.Equal(plan, back);
        var layer2 = back.Resolve(8, "linear")[2];
        Assert.Equal(new LolcatsOptions { Window = 32, InitWindowFactor = -1.5, Terraced = true }, layer2.Options);
        Assert.Equal(HybridPlan.SoftmaxAt(1, 4), HybridPlan.Parse("softmax@1,4"));
        Assert.NotEqual(HybridPlan.SoftmaxAt(1, 4), HybridPlan.Parse("softmax@4,1"));
    }

    [Fact]
    public void JsonOptionsSelectAMechanismWithSettings()
    {
        var layer = HybridPlan.Parse("hedgehog{\"FeatureDim\":32}@1").Resolve(3, "linear")[1];
        Assert.Equal("hedgehog", layer.Name);
        Assert.Equal(32, ((HedgehogOptions)layer.Options).FeatureDim);
    }

    [Theory]
    [InlineData("3:0", "needs linear ≥ 0 and full ≥ 1")]
    [InlineData("softmaxx@1", "unknown mechanism 'softmaxx'")]
    [InlineData("swa:abc@1", "must be a positive integer")]
    [InlineData("swa:0@1", "must be a positive integer")]
    [InlineData("swa:512@", "is not a comma-separated list of layer indices")]
    [InlineData("softmax@1,x", "is not a comma-separated list of layer indices")]
    [InlineData("3:1;;softmax@0", "empty clause")]
    [InlineData("3:1;", "empty clause")]
    [InlineData("softmax@1,1", "Layer 1 is listed twice")]
    [InlineData("hedgehog{\"FeatureDimm\":3}@1", "not valid HedgehogOptions JSON")]
    [InlineData("hedgehog{\"FeatureDim\":3@1", "are not balanced")]
    [InlineData("linear:5@1", "only swa takes a ':window' argument")]
    [InlineData("every fourth", "is neither a ratio")]
    [InlineData("@1", "names no mechanism")]
    public void BadTextIsRejectedQuotingItWithExamples(string spec, string problem)
    {
        var ex = Assert.Throws<FormatException>(() => HybridPlan.Parse(spec));
        Assert.Contains($"Invalid hybrid plan '{spec}'", ex.Message);
        Assert.Contains(problem, ex.Message);
        Assert.Contains("Valid examples: 3:1 (softmax at layers 3, 7, 11", ex.Message);
        Assert.False(HybridPlan.TryParse(spec, out _, out var error));
        Assert.Equal(ex.Message, error);
    }

    [Fact]
    public void LayersOutsideTheEncoderAreNamedWhenResolving()
    {
        var plan = HybridPlan.Parse("3:1;softmax@12");
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => plan.Resolve(12, "hedgehog"));
        Assert.Contains("layer 12 in 'softmax@12' does not exist in a 12-layer encoder", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => HybridPlan.SoftmaxAt(-5).Resolve(4, "hedgehog"));
        Assert.Throws<ArgumentException>(() => HybridPlan.SoftmaxAt());
        Assert.Throws<ArgumentException>(() => HybridPlan.None.Resolve(2, "nope"));
    }

    [Fact]
    public void CreatesTheMixerOfEachLayer()
    {
        var plan = HybridPlan.Parse("3:1;swa:8@0");
        using var first = plan.CreateMixer(new MixerConfig(16, 2, LayerIndex: 0, NumLayers: 4), "hedgehog");
        using var middle = plan.CreateMixer(new MixerConfig(16, 2, LayerIndex: 1, NumLayers: 4), "hedgehog", new HedgehogOptions { FeatureDim = 4 });
        using var last = plan.CreateMixer(new MixerConfig(16, 2, LayerIndex: 3, NumLayers: 4), "hedgehog");
        Assert.IsType<SlidingWindowMixer>(first);
        Assert.IsType<HedgehogMixer>(middle);
        Assert.IsType<SoftmaxMixer>(last);
        Assert.True(HybridPlan.None.IsNone);
        Assert.Equal("none", HybridPlan.None.ToString());
    }
}

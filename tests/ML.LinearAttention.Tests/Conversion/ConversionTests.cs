using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.Lolcats;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Tests.Pretrained;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Conversion;

/// <summary>Module surgery and stage 1 (attention transfer) of the softmax→linear conversion, on a tiny random BERT.</summary>
public sealed class ConversionTests(ITestOutputHelper output)
{
    internal sealed class ListLog : ITrainingLog
    {
        public List<string> Lines { get; } = new();
        public void Info(string message) => Lines.Add(message);
        public void Warning(string message) => Lines.Add("warning: " + message);
    }

    /// <summary>Random token rows of the tiny vocabulary (ids 5..23), [CLS] … [SEP], lengths 4..14.</summary>
    internal static List<Example> Rows(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            int n = rng.Next(2, 13);
            var ids = new[] { 2 }.Concat(Enumerable.Range(0, n).Select(_ => rng.Next(5, 24))).Append(3).ToArray();
            return new Example { Ids = ids, Segments = new int[ids.Length], Length = ids.Length };
        }).ToList();
    }

    private static TransferSettings Settings(int steps, double mse = 1000, double ce = 0) =>
        new() { Steps = steps, BatchSize = 8, LearningRate = 1e-2, OutputMseWeight = mse, AttentionCrossEntropyWeight = ce, LogEverySteps = 10, PadId = 0 };

    [Theory]
    [InlineData("hedgehog", 1000.0, 0.0)]
    [InlineData("hedgehog", 0.0, 1.0)]
    [InlineData("lolcats", 1000.0, 0.0)]
    public void Stage1ReducesTheAttentionTransferLossAndTrainsOnlyTheNewParameters(string mechanism, double mse, double ce)
    {
        Torch.Seed();
        using var softmax = BertEncoderTests.Load(TinyBert.Checkpoint());
        var options = new ConversionOptions
        {
            Attention = mechanism,
            // Feature dimension 16 > head dimension 4 (as LoLCATs' 64 > some heads): Kaiming-initialised maps with room to fit.
            AttentionOptions = mechanism == "lolcats" ? new LolcatsOptions { Window = 2, FeatureDim = 16 } : new HedgehogOptions { FeatureDim = 16 },
        };
        var plan = options.PlanFor(softmax.Config);
        Assert.Equal(new[] { 0, 1 }, plan.Select(p => p.Layer));
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        var expectedFresh = mechanism == "lolcats"
            ? new[] { "blocks.0.mixer.q_map.weight", "blocks.0.mixer.k_map.weight", "blocks.0.mixer.window_factors", "blocks.1.mixer.q_map.weight", "blocks.1.mixer.k_map.weight", "blocks.1.mixer.window_factors" }
            : new[] { "blocks.0.mixer.q_map.weight", "blocks.0.mixer.k_map.weight", "blocks.1.mixer.q_map.weight", "blocks.1.mixer.k_map.weight" };
        Assert.Equal(expectedFresh.Order(), fresh.Order());
        Assert.IsType<global::Microsoft.ML.LinearAttention.Attention.Softmax.SoftmaxMixer>(softmax.Blocks[1].Mixer);
        Assert.True(mechanism == "lolcats" ? converted.Blocks[1].Mixer is LolcatsMixer : converted.Blocks[1].Mixer is HedgehogMixer);
        var before = converted.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var teacherBefore = softmax.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        var train = Rows(64, 1);
        var heldOut = Rows(32, 2);
        var s = Settings(30, mse, ce) with { LearningRate = 3e-2 };
        double initial = AttentionTransfer.Evaluate(softmax, converted, plan, heldOut, s, CPU);
        var log = new ListLog();
        var report = AttentionTransfer.Run(softmax, converted, plan, fresh, () => train, s, CPU, log);
        double final = AttentionTransfer.Evaluate(softmax, converted, plan, heldOut, s, CPU);
        foreach (var line in log.Lines) output.WriteLine(line);
        output.WriteLine($"{mechanism} mse {mse} ce {ce}: held-out transfer loss {initial:G4} → {final:G4}");

        Assert.Equal(s.Steps, report.Steps);
        // The cross-entropy has the teacher's entropy as its floor, so it is checked in nats rather than as a ratio.
        Assert.True(mse > 0 ? final < 0.7 * initial : initial - final > 0.15, $"stage 1 did not reduce the held-out transfer loss enough: {initial:G4} → {final:G4}");
        Assert.Contains(log.Lines, l => l.StartsWith("Stage 1/2 done"));
        // Only the new parameters moved; the teacher did not move at all; everything trains again afterwards.
        foreach (var (name, value) in converted.state_dict())
            Assert.True(fresh.Contains(name) != value.allclose(before[name], 0, 0), $"{name}: {(fresh.Contains(name) ? "a new parameter did not train" : "a kept weight changed")}");
        foreach (var (name, value) in softmax.state_dict()) Assert.True(value.allclose(teacherBefore[name], 0, 0), $"teacher weight {name} changed");
        Assert.All(converted.parameters(), p => Assert.True(p.requires_grad));
    }

    [Fact]
    public void PlansPickLayersByIndexOrHybridPlanAndRejectWhatCannotConvert()
    {
        var config = new EncoderConfig { VocabularySize = 24, NumLayers = 4, ModelDim = 8, NumHeads = 2, Mixer = "softmax", Outputs = 2 };
        Assert.Equal(new[] { 0, 3 }, (new ConversionOptions { Layers = new[] { -1, 0 } }).PlanFor(config).Select(p => p.Layer));
        Assert.Equal(new[] { 0, 1, 2 }, (new ConversionOptions { HybridPlan = "softmax@-1" }).PlanFor(config).Select(p => p.Layer));
        var mixed = (new ConversionOptions { HybridPlan = "3:1;lolcats@0" }).PlanFor(config);
        Assert.Equal(new[] { (0, "lolcats"), (1, "hedgehog"), (2, "hedgehog") }, mixed.Select(p => (p.Layer, p.Name)));
        var converted = SoftmaxConversion.ConvertedConfig(config, mixed);
        Assert.Equal(new[] { "lolcats", "hedgehog", "hedgehog", "softmax" }, converted.Layers!.Select(l => l.Name));
        Assert.Equal(converted, EncoderConfig.FromJson(converted.ToJson()) with { Layers = converted.Layers });

        Assert.Contains("either Layers or HybridPlan", Assert.Throws<ArgumentException>(() =>
            (new ConversionOptions { Layers = new[] { 0 }, HybridPlan = "softmax@1" }).PlanFor(config)).Message);
        Assert.Contains("does not exist", Assert.Throws<ArgumentOutOfRangeException>(() => (new ConversionOptions { Layers = new[] { 4 } }).PlanFor(config)).Message);
        var linear = config with { Mixer = "linear" };
        Assert.Contains("not softmax", Assert.Throws<ArgumentException>(() => (new ConversionOptions { Layers = new[] { 1 } }).PlanFor(linear)).Message);
        Assert.Contains("no softmax layer", Assert.Throws<ArgumentException>(() => (new ConversionOptions()).PlanFor(linear)).Message);
        Assert.Contains("Unknown attention mechanism", Assert.Throws<ArgumentException>(() => (new ConversionOptions { Attention = "nope" }).PlanFor(config)).Message);
        Assert.Contains("TransferSteps", Assert.Throws<ArgumentOutOfRangeException>(() => (new ConversionOptions { TransferSteps = -1 }).PlanFor(config)).Message);
    }

    [Fact]
    public void AttentionCrossEntropyNeedsHedgehogFeatureMaps()
    {
        Torch.Seed();
        using var softmax = BertEncoderTests.Load(TinyBert.Checkpoint());
        var plan = (new ConversionOptions { Attention = "linear", AttentionOptions = new global::Microsoft.ML.LinearAttention.Attention.PlainLinear.LinearMixerOptions { OutputNorm = false } }).PlanFor(softmax.Config);
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        // elu+1 linear attention has no new parameters: stage 1 is skipped and says so.
        var log = new ListLog();
        Assert.Empty(fresh);
        Assert.Equal(0, AttentionTransfer.Run(softmax, converted, plan, fresh, () => Rows(8, 1), Settings(5), CPU, log).Steps);
        Assert.Contains("no new parameters", log.Lines.Single());

        var lolPlan = (new ConversionOptions { Attention = "lolcats" }).PlanFor(softmax.Config);
        using var lol = SoftmaxConversion.Convert(softmax, lolPlan, out var lolFresh);
        var e = Assert.Throws<ArgumentException>(() => AttentionTransfer.Run(softmax, lol, lolPlan, lolFresh, () => Rows(8, 1), Settings(5, 1000, 1), CPU, new ListLog()));
        Assert.Contains("hedgehog", e.Message);
    }
}

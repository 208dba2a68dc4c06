using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Tests.Pretrained;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Conversion;

/// <summary>The stage-1 budget ("auto" steps, batch and generic top-up), the generic corpus, all-layer transfer and the converted-backbone cache.</summary>
public sealed class TransferBudgetAndCacheTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TinyBert.TempFolder("conversion-cache");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void AutoBudgetFollowsTheDataWithAFloorAndTopsUpFewTexts()
    {
        // 1,000 short sentences (SST-2-like): the floor of 1,000 steps, 64 rows a batch, 3,000 generic texts so no text is seen more than ~16 times.
        var small = TransferBudget.Choose(1000, 13, null, null, 4000);
        Assert.Equal((1000, 64, 1000, 3000), (small.Steps, small.BatchSize, small.UserTexts, small.GenericTexts));
        Assert.Contains("generic texts", small.Reason);
        // Enough texts: no top-up; steps follow two passes over the data.
        var medium = TransferBudget.Choose(10_000, 128, null, null, 4000);
        Assert.Equal((2500, 8, 0), (medium.Steps, medium.BatchSize, medium.GenericTexts));
        // Large data is sampled, not swept.
        Assert.Equal(TransferBudget.MaximumAutoSteps, TransferBudget.Choose(1_000_000, 20, null, null, 4000).Steps);
        // Fixed steps and batch are kept; generic text only fills what the steps would otherwise cycle.
        var fixedSteps = TransferBudget.Choose(1000, 13, 200, 16, 4000);
        Assert.Equal((200, 16, 600), (fixedSteps.Steps, fixedSteps.BatchSize, fixedSteps.GenericTexts));
        Assert.Equal(0, TransferBudget.Choose(1000, 13, 20, 16, 4000).GenericTexts);
        Assert.Equal(0, TransferBudget.Choose(1000, 13, null, null, 0).GenericTexts);
        Assert.Equal(0, TransferBudget.Choose(1000, 13, 0, null, 4000).Steps);

        Assert.Contains("TransferSteps", Assert.Throws<ArgumentOutOfRangeException>(() => TransferBudget.Choose(10, 5, -1, null, 0)).Message);
        Assert.Contains("TransferBatchSize", Assert.Throws<ArgumentOutOfRangeException>(() => TransferBudget.Choose(10, 5, null, 0, 0)).Message);
        Assert.Contains("MinimumTransferTexts", Assert.Throws<ArgumentOutOfRangeException>(() => TransferBudget.Choose(10, 5, null, null, -1)).Message);
    }

    [Fact]
    public void GenericCorpusIsDeterministicVariedAndStableUnderCount()
    {
        var a = GenericCorpus.Texts(500, 1).ToList();
        Assert.Equal(a, GenericCorpus.Texts(500, 1));
        Assert.Equal(a.Take(20), GenericCorpus.Texts(20, 1));
        Assert.NotEqual(a, GenericCorpus.Texts(500, 2));
        Assert.True(a.Distinct().Count() > 480, $"only {a.Distinct().Count()} distinct texts of 500");
        var words = a.Select(t => t.Split(' ').Length).ToList();
        Assert.True(words.Min() <= 6 && words.Max() >= 40, $"text lengths {words.Min()}..{words.Max()} words");
        Assert.All(a, t => Assert.True(char.IsUpper(t[0]) || char.IsDigit(t[0]), t));
        Assert.True(a.SelectMany(t => t.Split(' ')).Distinct().Count() > 400);
        output.WriteLine(string.Join("\n", a.Take(5)));
    }

    [Fact]
    public void AllLayerTransferReducesEveryLayersLoss()
    {
        Torch.Seed();
        using var softmax = BertEncoderTests.Load(TinyBert.Checkpoint());
        var plan = new ConversionOptions { AttentionOptions = new HedgehogOptions { FeatureDim = 16 } }.PlanFor(softmax.Config);
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        var s = new TransferSettings { Steps = 30, BatchSize = 8, LearningRate = 3e-2, LogEverySteps = 10 };
        var heldOut = ConversionTests.Rows(32, 2);
        var before = AttentionTransfer.EvaluateLayers(softmax, converted, plan, heldOut, s, CPU);
        var report = AttentionTransfer.Run(softmax, converted, plan, fresh, () => ConversionTests.Rows(64, 1), s, CPU, new ConversionTests.ListLog());
        var after = AttentionTransfer.EvaluateLayers(softmax, converted, plan, heldOut, s, CPU);
        Assert.Equal(new[] { 0, 1 }, before.Keys.Order());
        Assert.Equal(new[] { 0, 1 }, report.LayerLosses!.Select(l => l.Layer));
        foreach (var layer in before.Keys)
        {
            output.WriteLine($"layer {layer}: held-out loss {before[layer]:G4} → {after[layer]:G4}; training {report.LayerLosses!.Single(l => l.Layer == layer)}");
            Assert.True(after[layer] < 0.8 * before[layer], $"layer {layer} did not learn: {before[layer]:G4} → {after[layer]:G4}");
        }
        Assert.Equal(after.Values.Average(), AttentionTransfer.Evaluate(softmax, converted, plan, heldOut, s, CPU), 4);
    }

    private (SequenceModel Teacher, IReadOnlyList<ConvertedLayer> Plan) Teacher(int seed = 7)
    {
        Torch.Seed();
        var softmax = BertEncoderTests.Load(TinyBert.Checkpoint(seed));
        return (softmax, new ConversionOptions { AttentionOptions = new HedgehogOptions { FeatureDim = 16 } }.PlanFor(softmax.Config));
    }

    [Fact]
    public void CacheHitRestoresTheTransferredParametersAndMissesOnAnyChangedInput()
    {
        var (softmax, plan) = Teacher();
        using var owned = softmax;
        var texts = ConversionTests.Rows(32, 1);
        var s = new TransferSettings { Steps = 5, BatchSize = 8, LogEverySteps = 0, Seed = 3 };
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        AttentionTransfer.Run(softmax, converted, plan, fresh, () => texts, s, CPU, new ConversionTests.ListLog());
        string key = ConvertedBackboneCache.Key(softmax, converted.Config, s, texts);
        Assert.False(ConvertedBackboneCache.TryLoad(_dir, key, converted, fresh));   // empty folder: a miss
        var path = ConvertedBackboneCache.Save(_dir, key, converted, fresh, "test");
        Assert.Equal(new[] { path }, Directory.GetFiles(_dir));                       // no temporary file left behind

        using var again = SoftmaxConversion.Convert(softmax, plan, out var freshAgain);
        Assert.True(ConvertedBackboneCache.TryLoad(_dir, key, again, freshAgain));
        var trained = converted.state_dict();
        foreach (var (name, value) in again.state_dict()) Assert.True(value.allclose(trained[name], 0, 0), $"{name} differs after a cache hit");

        // The key follows the seed, the steps, the texts, the teacher's weights and the mechanism options, not the task head.
        Assert.Equal(key, ConvertedBackboneCache.Key(softmax, converted.Config with { Outputs = 5 }, s, texts));
        Assert.NotEqual(key, ConvertedBackboneCache.Key(softmax, converted.Config, s with { Seed = 4 }, texts));
        Assert.NotEqual(key, ConvertedBackboneCache.Key(softmax, converted.Config, s with { Steps = 6 }, texts));
        Assert.NotEqual(key, ConvertedBackboneCache.Key(softmax, converted.Config, s, texts.Skip(1)));
        var (other, otherPlan) = Teacher(seed: 8);
        using (other) Assert.NotEqual(key, ConvertedBackboneCache.Key(other, converted.Config, s, texts));
        var wider = SoftmaxConversion.ConvertedConfig(softmax.Config, new ConversionOptions { AttentionOptions = new HedgehogOptions { FeatureDim = 8 } }.PlanFor(softmax.Config));
        Assert.NotEqual(key, ConvertedBackboneCache.Key(softmax, wider, s, texts));
    }

    [Fact]
    public void StaleTruncatedDamagedOrForeignCacheFilesAreRefusedWithTheFix()
    {
        var (softmax, plan) = Teacher();
        using var owned = softmax;
        using var converted = SoftmaxConversion.Convert(softmax, plan, out var fresh);
        var s = new TransferSettings { Steps = 1, BatchSize = 8, LogEverySteps = 0 };
        var texts = ConversionTests.Rows(8, 1);
        string key = ConvertedBackboneCache.Key(softmax, converted.Config, s, texts);
        string otherKey = ConvertedBackboneCache.Key(softmax, converted.Config, s with { Seed = 9 }, texts);
        var good = File.ReadAllBytes(ConvertedBackboneCache.Save(_dir, otherKey, converted, fresh, "another entry"));
        var path = ConvertedBackboneCache.PathFor(_dir, key);

        string Refused(byte[] content)
        {
            File.WriteAllBytes(path, content);
            var e = Assert.Throws<ConversionCacheException>(() => ConvertedBackboneCache.TryLoad(_dir, key, converted, fresh));
            Assert.Contains(path, e.Message);
            Assert.Contains("Delete", e.Message);
            Assert.Contains("CacheDirectory = null", e.Message);
            return e.Message;
        }
        Assert.Contains("stale", Refused(good));                                     // another key's entry under this name
        Assert.Contains("truncated", Refused(good[..(good.Length / 2)]));
        var flipped = (byte[])good.Clone();
        flipped[good.Length / 2] ^= 0x40;
        Assert.Contains("damaged", Refused(flipped));
        Assert.Contains("foreign", Refused("PK\u0003\u0004 not a cache entry"u8.ToArray()));
        Assert.Contains("foreign", Refused(Array.Empty<byte>()));

        // An entry for a model whose new tensors differ (here: one tensor fewer expected) is refused too.
        File.WriteAllBytes(path, good);
        Assert.Throws<ConversionCacheException>(() => ConvertedBackboneCache.TryLoad(_dir, otherKey, converted, fresh.Skip(1).ToList()));
    }

    [Fact]
    public void BadConversionOptionsNameTheOptionAndTheFix()
    {
        var config = new EncoderConfig { VocabularySize = 24, NumLayers = 2, ModelDim = 8, NumHeads = 2, Mixer = "softmax", Outputs = 2 };
        string Error(ConversionOptions o) => Assert.ThrowsAny<ArgumentException>(() => o.PlanFor(config)).Message;
        Assert.Contains("MinimumTransferTexts", Error(new ConversionOptions { MinimumTransferTexts = -1 }));
        Assert.Contains("TransferBatchSize", Error(new ConversionOptions { TransferBatchSize = 0 }));
        Assert.Contains("null (auto)", Error(new ConversionOptions { TransferSteps = -5 }));
        Assert.Contains("CacheDirectory is empty", Error(new ConversionOptions { CacheDirectory = " " }));
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "x");
        Assert.Contains("is a file", Error(new ConversionOptions { CacheDirectory = file }));
        Assert.EndsWith(Path.Combine("ML.LinearAttention", "converted-backbones"), ConversionOptions.DefaultCacheDirectory);
    }
}

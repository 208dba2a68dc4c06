using Microsoft.ML.LinearAttention.Conversion;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Tokenization;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>Log lines and option errors say what happened: from scratch, the mechanism in use, one number format, no parameter noise.</summary>
public sealed class TrainingLogLineTests
{
    [Fact]
    public void FromScratchTrainingIsNotCalledFineTuningAndLearningRatesShareOneFormat()
    {
        var ml = new MLContext(1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.StartsWith("LinearAttention", StringComparison.Ordinal)) lock (log) log.Add(e.RawMessage); };
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LearningRate = 6.14e-5;
        Assert.Null(o.FineTuning); // unset, so an explicit "full" can be told apart
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data);

        Assert.Contains(log, l => l.StartsWith("Training from scratch: all ", StringComparison.Ordinal));
        Assert.DoesNotContain(log, l => l.Contains("Fine-tuning 'full'", StringComparison.Ordinal));
        var rates = log.SelectMany(l => System.Text.RegularExpressions.Regex.Matches(l, @"\blr (\S+?)[,.]?(\s|$)").Select(m => m.Groups[1].Value)).ToList();
        Assert.NotEmpty(rates);
        Assert.All(rates, r => Assert.Matches(@"^\d(\.\d+)?e[-+]\d\d$", r));
        Assert.Contains("6.14e-05", rates);
    }

    [Fact]
    public void BlocksTokenizerAndOptionErrorsAreDescribedPlainly()
    {
        var hedgehog = new EncoderConfig { NumLayers = 6, Layers = Enumerable.Repeat(new EncoderConfig.LayerSpec("hedgehog", null), 6).ToList() };
        Assert.Equal("6 × hedgehog blocks", LinearAttentionEstimator<TextClassificationTransformer>.DescribeBlocks(hedgehog));
        var hybrid = new EncoderConfig { NumLayers = 3, Layers = new() { new("softmax", null), new("hedgehog", null), new("hedgehog", null) } };
        Assert.Equal("3 blocks, hybrid plan softmax, hedgehog, hedgehog", LinearAttentionEstimator<TextClassificationTransformer>.DescribeBlocks(hybrid));

        var wordPiece = BackboneSetup.DescribeTokenizer(TextTokenizer.Create(null), "all-MiniLM-L6-v2");
        Assert.Contains("all-MiniLM-L6-v2's own vocabulary", wordPiece);
        Assert.DoesNotContain("embedded", wordPiece);

        var ml = new MLContext(1);
        var o = TextClassificationTests.Tiny();
        o.MaxSequenceLength = 4;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(8));
        var e = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o)).Fit(data));
        Assert.Contains("MaxSequenceLength must lie in 8..1048576 (it is 4)", e.Message);
        Assert.DoesNotContain("(Parameter", e.Message);
        var schema = Assert.ThrowsAny<ArgumentException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Body" }).GetOutputSchema(
            Microsoft.ML.LinearAttention.Runtime.MLNetBridge.ShapeOf(data.Schema)));
        Assert.DoesNotContain("(Parameter", schema.Message);

        // "full" said explicitly now contradicts a conversion's own stage-2 method, instead of silently giving way to it.
        var explicitFull = TextClassificationTests.Tiny();
        explicitFull.FineTuning = "full";
        explicitFull.Conversion = new ConversionOptions { Attention = "hedgehog" };
        Assert.Contains("Two stage-2 fine-tuning methods", Assert.Throws<ArgumentException>(() => ConversionStage.StageTwoMethod(explicitFull, null)).Message);
        explicitFull.FineTuning = null;
        Assert.Equal("lora", ConversionStage.StageTwoMethod(explicitFull, null).Method);
    }
}

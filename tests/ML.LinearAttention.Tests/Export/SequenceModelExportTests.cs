using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hedgehog;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Attention.Softmax;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using Microsoft.ML.LinearAttention.FineTuning.MomentProbing;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>
/// Every exportable mechanism, layout and head: a tiny encoder with perturbed weights (so that zero-initialised adapters
/// and identity maps matter), scored by TorchSharp and by ONNX Runtime on padded rows of different lengths.
/// </summary>
public sealed class SequenceModelExportTests(ITestOutputHelper output)
{
    private const int Side = 3;

    private static EncoderConfig Config(string mixer, MixerOptions? options = null, Func<EncoderConfig, EncoderConfig>? change = null)
    {
        var c = new EncoderConfig
        {
            VocabularySize = 60, PadId = 0, ModelDim = 16, NumLayers = 2, NumHeads = 2, FfnMultiplier = 2, Dropout = 0.1,
            Mixer = mixer, MixerOptionsJson = options is null ? null : MixerRegistry.SerializeOptions(options), Outputs = 3,
        };
        return change is null ? c : change(c);
    }

    private static List<Example> Rows(int segments, bool side, int count = 5) => Enumerable.Range(0, count).Select(r =>
    {
        int length = 3 + (r * 5) % 11;
        return new Example
        {
            Ids = Enumerable.Range(0, length).Select(i => 1 + (i * 7 + r * 13) % 59).ToArray(),
            Segments = Enumerable.Range(0, length).Select(i => Math.Min(segments - 1, i * segments / length)).ToArray(),
            Side = side ? Enumerable.Range(0, Side).Select(i => (float)Math.Sin(r + i)).ToArray() : null,
            Label = r % 3,
            Length = length,
        };
    }).ToList();

    private static void Perturb(SequenceModel model, int seed)
    {
        using var _ = no_grad();
        manual_seed(seed);
        foreach (var (name, p) in model.named_parameters())
            p.add_(randn_like(p) * (name.Contains("lora_B") ? 0.3 : 0.05));
    }

    private double Check(SequenceModel model, SequenceExportTask task = SequenceExportTask.Classification, int segments = 1, bool side = false, float[]? sideFill = null)
    {
        var rows = Rows(segments, side);
        var expected = OnnxParity.Torch(model, rows, side ? Side : 0, task);
        using var stream = new MemoryStream();
        int nodes = SequenceModelExport.Write(model, new SequenceExportSettings(task, 64, sideFill), stream);
        var inputs = OnnxParity.Inputs(rows, model.Config.PadId, SequenceModelExport.UsesSegments(model), side ? Side : 0);
        var actual = OnnxParity.Run(stream.ToArray(), inputs, task == SequenceExportTask.Classification ? SequenceModelExport.Scores : SequenceModelExport.Score);
        double delta = OnnxParity.AssertClose(expected, actual);
        output.WriteLine($"{nodes} nodes, max |Δ| {delta:E2}");
        return delta;
    }

    public static TheoryData<string, string> Mechanisms => new()
    {
        { "softmax", "{}" },
        { "softmax", "{\"Window\":2}" },
        { "linear", "{\"FeatureMap\":\"elu\"}" },
        { "linear", "{\"FeatureMap\":\"relu\",\"OutputNorm\":false}" },
        { "linear", "{\"FeatureMap\":\"identity\",\"Normalize\":false}" },
        { "linear", "{\"FeatureMap\":\"dpfp\",\"DpfpNu\":2}" },
        { "linear", "{\"FeatureMap\":\"t2r\",\"FeatureDim\":12}" },
        { "linear", "{\"FeatureMap\":\"t2r\",\"TieFeatureMaps\":true}" },
        { "linear", "{\"FeatureMap\":\"elementwise_product\",\"Normalize\":false}" },
        { "hedgehog", "{}" },
        { "hedgehog", "{\"FeatureDim\":6,\"TieQueryKeyMaps\":true}" },
    };

    [Theory]
    [MemberData(nameof(Mechanisms))]
    public void ExportedMechanismMatchesTorchSharp(string mechanism, string optionsJson)
    {
        using var model = new SequenceModel(Config(mechanism, MixerRegistry.DeserializeOptions(mechanism, optionsJson)));
        Perturb(model, 1);
        Check(model);
    }

    [Fact]
    public void HybridWithLearnedPositionsSegmentsSideFeaturesAndClsPoolingMatches()
    {
        var plan = EncoderConfig.Plan(new[] { new LayerMixer("softmax"), new LayerMixer("linear", new LinearMixerOptions { FeatureMap = "relu" }), new LayerMixer("hedgehog") });
        using var model = new SequenceModel(Config("linear", change: c => c with
        {
            NumLayers = 3, Layers = plan, Position = PositionEncoding.Learned, MaxPositions = 64, NumSegments = 2, SideFeatures = Side, Pooling = Pooling.Cls,
        }));
        Perturb(model, 2);
        using (no_grad()) model.SetNormalization(new[] { 0.1f, -0.2f, 0.3f }, new[] { 2f, 0.5f, 1f }, null, null, 0, 1);
        Check(model, segments: 2, side: true);
    }

    [Theory]
    [InlineData("gelu")]
    [InlineData("gelu_new")]
    [InlineData("relu")]
    public void BertPostNormLayoutMatches(string activation)
    {
        using var model = new SequenceModel(Config("softmax", change: c => c with
        {
            Architecture = EncoderArchitecture.BertPostNorm, Position = PositionEncoding.Learned, MaxPositions = 64, Activation = activation, NumSegments = 3, Pooling = Pooling.Cls,
        }));
        Perturb(model, 3);
        Check(model, segments: 3);
    }

    [Fact]
    public void RegressionOutputIsDestandardized()
    {
        using var model = new SequenceModel(Config("linear", change: c => c with { Outputs = 1 }));
        Perturb(model, 4);
        using (no_grad()) model.SetNormalization(null, null, null, null, 2.5f, 0.7f);
        Check(model, SequenceExportTask.Regression);
    }

    [Fact]
    public void MissingSideFeaturesAreFilledWithTheTrainingMeans()
    {
        using var model = new SequenceModel(Config("linear", change: c => c with { SideFeatures = Side }));
        Perturb(model, 5);
        var fill = new[] { 0.5f, 0.25f, -1f };
        var rows = Rows(1, side: true);
        var filled = rows.Select(r => new Example { Ids = r.Ids, Segments = r.Segments, Side = fill.ToArray(), Length = r.Length }).ToList();
        foreach (var r in rows) r.Side![1] = float.NaN;
        foreach (var (r, f) in rows.Zip(filled)) { f.Side![0] = r.Side![0]; f.Side[2] = r.Side[2]; }
        var expected = OnnxParity.Torch(model, filled, Side, SequenceExportTask.Classification);
        using var stream = new MemoryStream();
        SequenceModelExport.Write(model, new SequenceExportSettings(SequenceExportTask.Classification, 64, fill), stream);
        var actual = OnnxParity.Run(stream.ToArray(), OnnxParity.Inputs(rows, 0, false, Side), SequenceModelExport.Scores);
        OnnxParity.AssertClose(expected, actual);
    }

    [Theory]
    [InlineData("lora", false)]
    [InlineData("lora", true)]
    [InlineData("linear_probe", false)]
    [InlineData("moment_probing", false)]
    [InlineData("psrp", false)]
    public void FineTunedModelsMatch(string method, bool finished)
    {
        FineTuningOptions? options = method switch
        {
            "lora" => new LoraOptions { Rank = 2 },
            "moment_probing" => new MomentProbingOptions { HiddenDim = 32, Heads = 4 },
            "psrp" => new PsrpOptions { Probe = new MomentProbingOptions { HiddenDim = 32, Heads = 4 }, Bottleneck = 4 },
            _ => null,
        };
        using var model = new SequenceModel(Config("linear", change: c => c with { Pooling = method == "moment_probing" ? Pooling.Cls : Pooling.Mean }));
        FineTuningRegistry.Apply(model, method, options);
        Perturb(model, 6);
        if (finished) FineTuningRegistry.Finish(model);
        if (method == "lora") Assert.Contains(model.modules(), m => m is LoraLinear || finished);
        Check(model);
    }

    [Fact]
    public void UnsupportedMechanismIsRefusedByNameWithTheExportableList()
    {
        using var model = new SequenceModel(Config("linear", change: c => c with { Layers = EncoderConfig.Plan(new[] { new LayerMixer("linear"), new LayerMixer("gla") }), Position = PositionEncoding.None }));
        var e = Assert.Throws<NotSupportedException>(() => SequenceModelExport.Write(model, new SequenceExportSettings(SequenceExportTask.Classification, 64), new MemoryStream()));
        Assert.Contains("'gla' (layer 1)", e.Message);
        foreach (var name in MixerExport.Supported) Assert.Contains(name, e.Message);
    }

    [Fact]
    public void NumericSequenceModelsAreRefused()
    {
        using var model = new SequenceModel(new EncoderConfig { NumericFeatures = 2, ModelDim = 16, NumHeads = 2, Outputs = 1 });
        var e = Assert.Throws<NotSupportedException>(() => SequenceModelExport.CheckSupported(model));
        Assert.Contains("numeric sequences", e.Message);
    }
}

using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Persistence;
using Microsoft.ML.LinearAttention.Training;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Text;

/// <summary>The scoring precision option: which module scores, in which dtype, how far bf16 lands from fp32, and the errors.</summary>
public sealed class InferencePrecisionTests
{
    public sealed class Prediction
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    private static (MLContext Ml, TextClassificationTransformer Model, IDataView Rows) FitTiny(InferencePrecision precision = InferencePrecision.Auto)
    {
        var ml = new MLContext(1);
        var o = TextClassificationTests.Tiny();
        o.BatchSize = 16;
        o.MaxEpochs = 3;
        o.InferencePrecision = precision;
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(8)));
        var data = keyed.Transform(ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(256)));
        var model = ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o).Fit(data);
        return (ml, model, data);
    }

    private static float[][] Scores(IDataView scored) => scored.GetColumn<float[]>("Score").ToArray();

    [Fact]
    public void Bf16ScoresThroughABf16CopyAndAgreesWithFp32()
    {
        var (_, model, data) = FitTiny();
        using var owned = model;
        Assert.Equal(InferencePrecision.Float32, model.EffectivePrecision); // Auto on the CPU
        Assert.Same(model.Model, model.ScoringModel);
        var fp32 = Scores(model.Transform(data));

        model.Precision = InferencePrecision.BFloat16;
        Assert.Equal(InferencePrecision.BFloat16, model.EffectivePrecision);
        var copy = model.ScoringModel;
        Assert.NotSame(model.Model, copy);
        Assert.All(copy.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.All(model.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype)); // the saved weights stay fp32
        Assert.False(copy.training);
        var bf16 = Scores(model.Transform(data));

        // bf16 keeps 8 mantissa bits: through one small layer the class probabilities of almost every row move by a few
        // thousandths, and a rare row moves more (one of 256 by 0.17 in this fit). A row may change class only where
        // fp32 itself was near the boundary.
        var moved = new double[fp32.Length];
        for (int i = 0; i < fp32.Length; i++)
        {
            for (int c = 0; c < fp32[i].Length; c++) moved[i] = Math.Max(moved[i], Math.Abs(fp32[i][c] - bf16[i][c]));
            if (ArgMax(fp32[i]) != ArgMax(bf16[i])) Assert.True(Math.Abs(fp32[i][0] - fp32[i][1]) < 0.1, $"row {i} changed class with a clear fp32 margin");
        }
        Assert.InRange(moved.Max(), 1e-7, 0.5); // not 0: the bf16 copy really scored
        Assert.InRange(moved.Average(), 0, 0.01);
        Assert.True(moved.Count(d => d > 0.02) <= fp32.Length / 50, $"{moved.Count(d => d > 0.02)} of {fp32.Length} rows moved by more than 0.02");
    }

    [Fact]
    public void PrecisionOptionReachesTheTransformerAndSurvivesNothingOnSave()
    {
        var (ml, model, data) = FitTiny(InferencePrecision.BFloat16);
        using var owned = model;
        Assert.Equal(InferencePrecision.BFloat16, model.Precision);
        var path = Path.Combine(Path.GetTempPath(), $"la-precision-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            using var loaded = (TextClassificationTransformer)LinearAttentionModel.Load(ml, path, out _);
            Assert.Equal(InferencePrecision.Auto, loaded.Precision); // a scoring-time setting: not in the file
            Assert.All(loaded.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
            loaded.Precision = InferencePrecision.BFloat16;          // set after Load
            var expected = Scores(model.Transform(data));
            var actual = Scores(loaded.Transform(data));
            for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i]);

            using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(loaded);
            var one = engine.Predict(PersistenceTests.SmallRows(256)[0]).Score;
            Assert.Equal(expected[0][0], one[0], 2); // one row alone pads nothing: bf16 rounding only

            using var pool = new LinearAttentionPredictionPool<SentimentRow, Prediction>(path, new PredictionPoolOptions { WatchForChanges = false, Precision = InferencePrecision.BFloat16 });
            using var lease = pool.Rent();
            Assert.All(LinearAttentionModel.TransformersIn(lease.Generation.Model), t => Assert.Equal(InferencePrecision.BFloat16, t.Precision));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void BadPrecisionValuesFailWithTheFix()
    {
        var (ml, model, data) = FitTiny();
        using var owned = model;
        var fp16 = Assert.Throws<NotSupportedException>(() => model.Precision = InferencePrecision.Float16);
        Assert.Contains("CUDA", fp16.Message);
        Assert.Contains("BFloat16", fp16.Message);
        Assert.Equal(InferencePrecision.Auto, model.Precision); // unchanged
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Precision = (InferencePrecision)42);
        var parse = Assert.Throws<ArgumentException>(() => ScoringPrecision.Parse("fp8"));
        Assert.Contains("auto, fp32, bf16 or fp16", parse.Message);
        Assert.Equal(InferencePrecision.BFloat16, ScoringPrecision.Parse(" BF16 "));

        // Refused before training, not after it.
        var o = TextClassificationTests.Tiny();
        o.InferencePrecision = InferencePrecision.Float16;
        o.MaxEpochs = 50;
        var fit = Assert.Throws<NotSupportedException>(() => ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o).Fit(data));
        Assert.Contains("Float16", fit.Message);
    }

    [Fact]
    public void PipelineScoringKeepsRowOrderAndMatchesBatchPredict()
    {
        var (ml, model, _) = FitTiny();
        using var owned = model;
        // Lengths vary, so the pipeline sorts each window by length and pads differently from a plain batch of 64.
        var rows = PersistenceTests.SmallRows(300);
        var view = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(rows));
        var piped = Scores(model.Transform(view));
        Assert.Equal(rows.Count, piped.Length);
        using var engine = ml.Model.CreatePredictionEngine<SentimentRow, Prediction>(model, new PredictionEngineOptions { OwnsTransformer = false });
        for (int i = 0; i < rows.Count; i++)
        {
            var alone = engine.Predict(rows[i]).Score; // the row by itself, no padding: the order is the input's
            for (int c = 0; c < alone.Length; c++) Assert.Equal(alone[c], piped[i][c], 5);
        }

        // Rows of one length form the same batches as the old one-batch-at-a-time path: bit for bit the same scores.
        var even = Enumerable.Range(0, 150).Select(i => new SentimentRow { Text = (i % 3) switch { 0 => "great good fine", 1 => "awful bad hate", _ => "okay love terrible" }, Sentiment = "positive" }).ToList();
        var evenView = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment").Fit(ml.Data.LoadFromEnumerable(rows)).Transform(ml.Data.LoadFromEnumerable(even));
        var pipedEven = Scores(model.Transform(evenView));
        var reader = new Microsoft.ML.LinearAttention.Data.ExampleReader(model.Columns, model.Tokenizer, model.MaxSequenceLength);
        var examples = reader.Read(evenView).ToList();
        var old = examples.Chunk(model.InferenceBatchSize).SelectMany(chunk => model.Predict(chunk)).ToArray();
        Assert.Equal(old.Length, pipedEven.Length);
        for (int i = 0; i < old.Length; i++) Assert.Equal(old[i], pipedEven[i]);
    }

    [Fact]
    public void ScoringPipelinePassesOnReaderErrorsAndStopsEarlyCleanly()
    {
        var spec = new CollateSpec(LabelKind.Key, 0, 0, 0, null);
        IEnumerable<Example> Failing()
        {
            yield return new Example { Ids = new[] { 1, 2 }, Segments = new[] { 0, 0 }, Length = 2 };
            throw new InvalidDataException("row 2 is damaged");
        }
        Func<ModelBatch, Tensor> score = b => b.Tokens!.to(ScalarType.Float32).sum(1, keepdim: true);
        var e = Assert.Throws<InvalidDataException>(() => ScoringPipeline.Score(Failing(), spec, 4, CPU, score).ToList());
        Assert.Equal("row 2 is damaged", e.Message);

        var many = Enumerable.Range(1, 1000).Select(i => new Example { Ids = Enumerable.Repeat(i, 1 + i % 7).ToArray(), Segments = new int[1 + i % 7], Length = 1 + i % 7 });
        var firstThree = ScoringPipeline.Score(many, spec, 8, CPU, score).Take(3).ToList(); // the threads are stopped and joined
        Assert.Equal(new[] { 2f, 6f, 12f }, firstThree.Select(s => s[0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ScoringPipeline.Score(many, spec, 0, CPU, score));
    }

    [Fact]
    public void ParallelScoringTokenizationGivesTheRowByRowStream()
    {
        var (ml, model, _) = FitTiny();
        using var owned = model;
        var rows = PersistenceTests.SmallRows(150); // blocks of 64: the last block is partial
        var view = ml.Data.LoadFromEnumerable(rows);
        List<Example> Read(int threads)
        {
            var reader = new Microsoft.ML.LinearAttention.Data.ExampleReader(model.Columns, model.Tokenizer, model.MaxSequenceLength);
            using var cursor = view.GetRowCursor(reader.ColumnsNeeded(view.Schema, withLabel: false));
            return reader.ReadScoringRows(cursor, threads).ToList();
        }
        var one = Read(1);
        var three = Read(3);
        Assert.Equal(rows.Count, one.Count);
        Assert.Equal(one.Select(e => e.Ids!), three.Select(e => e.Ids!));
        Assert.Equal(one.Select(e => e.Segments!), three.Select(e => e.Segments!));
    }

    private static int ArgMax(float[] v) => Array.IndexOf(v, v.Max());
}

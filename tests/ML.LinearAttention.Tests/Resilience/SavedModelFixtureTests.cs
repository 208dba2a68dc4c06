using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Tokenization;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Resilience;

/// <summary>
/// Models saved by an earlier build (Fixtures/mlnet-&lt;version&gt;/) must still load and predict the same, bit for bit,
/// after a package upgrade. The fixtures are written once by <see cref="WriteFixturesWithTheLoadedMLNet"/>, which runs
/// only when LA_WRITE_MODEL_FIXTURES=1 and writes into a folder named after the Microsoft.ML version it ran with.
/// </summary>
public sealed class SavedModelFixtureTests
{
    /// <summary>The ML.NET version the kept fixtures were saved with (the build before the move to Microsoft.ML 6).</summary>
    private const string SavedWith = "5.0.1";

    private const string TextModel = "text-classifier.zip", TextExpected = "text-classifier.expected.tsv";
    private const string SequenceModel = "sequence-regressor.zip", SequenceExpected = "sequence-regressor.expected.tsv";

    // A small WordPiece vocabulary keeps the model far under 1 MB (the embedded BERT one alone is 30,522 rows); the
    // sub-words, punctuation and accents still exercise BertTokenizer's splitting, lower-casing and accent stripping.
    private static readonly string[] Vocabulary =
    {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "'",
        "great", "awful", "fine", "bad", "good", "terrible", "love", "hate", "okay", "superb",
        "the", "service", "was", "not", "very", "cafe", "##ly", "##s", "##ed", "##er", "un", "##real",
    };

    // Rows scored for the record: plain, mixed case, punctuation, accents, sub-words, unknown words, empty, and one
    // longer than MaxSequenceLength (truncated at prediction).
    private static readonly string[] TextRows =
    {
        "great good love", "awful bad hate terrible", "fine okay", "GREAT Service, was not bad!",
        "the café was superbly unreal?", "loved hated loves", "zebra quantum ☃", "",
        string.Join(' ', Enumerable.Repeat("good bad", 24)), "okay... not very great", "terrible's fine'ly", "superb",
    };

    private static string FixtureDir(string version)
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LinearAttentionML.sln"))) dir = dir.Parent;
        Assert.True(dir is not null, $"The repository root (LinearAttentionML.sln) was not found above {AppContext.BaseDirectory}.");
        return Path.Combine(dir!.FullName, "tests", "ML.LinearAttention.Tests", "Fixtures", "mlnet-" + version);
    }

    private static string Hex(float f) => BitConverter.SingleToInt32Bits(f).ToString("x8", CultureInfo.InvariantCulture);
    private static float FromHex(string h) => BitConverter.Int32BitsToSingle(int.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture));

    private static TextClassificationOptions TextOptions(string vocabularyFile) => new()
    {
        ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, Dropout = 0.1, MaxSequenceLength = 24,
        BatchSize = 16, MaxEpochs = 2, LearningRate = 3e-3, LogEverySteps = 0, CpuThreads = 1, InferenceBatchSize = 8,
        Tokenizer = new TokenizerOptions { VocabularyFile = vocabularyFile },
    };

    private static SequenceRegressionOptions SequenceOptions() => new()
    {
        ModelDimension = 16, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, Dropout = 0.05, MaxSequenceLength = 64,
        BatchSize = 16, MaxEpochs = 2, LearningRate = 2e-3, LogEverySteps = 0, CpuThreads = 1, Position = Encoder.PositionEncoding.Learned,
    };

    /// <summary>The predicted label and the scores of every row, as the text-classifier pipeline gives them (hex bits).</summary>
    private static List<string> ScoreText(MLContext ml, ITransformer model)
    {
        var rows = TextRows.Select(t => new SentimentRow { Text = t }).ToList();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        var labels = scored.GetColumn<string>("PredictedSentiment").ToList();
        var scores = scored.GetColumn<float[]>("Score").ToList();
        return rows.Select((r, i) => labels[i] + "\t" + string.Join(' ', scores[i].Select(Hex)) + "\t" + r.Text).ToList();
    }

    private static List<SequenceRegressionTests.SensorWindow> SequenceRows() => SequenceRegressionTests.Sensors(10, 77);

    private static List<string> ScoreSequence(MLContext ml, ITransformer model)
    {
        var rows = SequenceRows();
        var scores = model.Transform(ml.Data.LoadFromEnumerable(rows)).GetColumn<float>("Score").ToList();
        return rows.Select((r, i) => Hex(scores[i]) + "\t" + string.Join(' ', r.Readings.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))).ToList();
    }

    [Fact]
    public void TextClassifierSavedWithMLNet501LoadsAndPredictsTheSame()
    {
        var dir = FixtureDir(SavedWith);
        var ml = new MLContext(seed: 1);
        var model = LinearAttentionModel.Load(ml, Path.Combine(dir, TextModel), out var schema);
        try
        {
            Assert.NotNull(schema.GetColumnOrNull("Sentiment"));
            AssertSameLines(File.ReadAllLines(Path.Combine(dir, TextExpected), Encoding.UTF8), ScoreText(ml, model), TextModel, scoreField: 1);
        }
        finally { (model as IDisposable)?.Dispose(); }
    }

    [Fact]
    public void SequenceRegressorSavedWithMLNet501LoadsThroughModelLoadAndPredictsTheSame()
    {
        var dir = FixtureDir(SavedWith);
        var ml = new MLContext(seed: 1);
        LinearAttentionModel.Register(ml); // a program that only loads registers the loader itself
        var model = ml.Model.Load(Path.Combine(dir, SequenceModel), out _);
        try { AssertSameLines(File.ReadAllLines(Path.Combine(dir, SequenceExpected)), ScoreSequence(ml, model), SequenceModel, scoreField: 0); }
        finally { (model as IDisposable)?.Dispose(); }
    }

    // Bit-exact: the same weights through the same CPU kernels on one thread; a difference names the row and the values.
    private static void AssertSameLines(string[] expected, List<string> actual, string what, int scoreField)
    {
        Assert.Equal(expected.Length, actual.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] == actual[i]) continue;
            string Readable(string line) => string.Join(" | ", line.Split('\t').Select((f, k) => k != scoreField ? f
                : string.Join(' ', f.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(h => FromHex(h).ToString("R", CultureInfo.InvariantCulture)))));
            Assert.Fail($"{what} row {i} predicts differently from what ML.NET {SavedWith} recorded:\n  recorded: {Readable(expected[i])}\n  now:      {Readable(actual[i])}");
        }
    }

    [ModelFixtureWriterFact]
    public void WriteFixturesWithTheLoadedMLNet()
    {
        var dir = FixtureDir(MLNetBridge.LoadedMLNetVersion);
        Directory.CreateDirectory(dir);
        var vocab = Path.Combine(Path.GetTempPath(), "la-fixture-vocab-" + Guid.NewGuid().ToString("N") + ".txt");
        File.WriteAllLines(vocab, Vocabulary);
        try
        {
            var ml = new MLContext(seed: 1);
            var train = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(64));
            var text = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
                .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: TextOptions(vocab)))
                .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"))
                .Fit(train);
            ml.Model.Save(text, train.Schema, Path.Combine(dir, TextModel));
            File.WriteAllLines(Path.Combine(dir, TextExpected), ScoreText(ml, text), new UTF8Encoding(false));
            (text as IDisposable)?.Dispose();

            var sensors = ml.Data.LoadFromEnumerable(SequenceRegressionTests.Sensors(64, 1));
            var seq = ml.Transforms.LinearAttention.SequenceRegression(labelColumnName: "Target", sequenceColumnName: "Readings",
                sequenceFeatureCount: 2, options: SequenceOptions()).Fit(sensors);
            ml.Model.Save(seq, sensors.Schema, Path.Combine(dir, SequenceModel));
            File.WriteAllLines(Path.Combine(dir, SequenceExpected), ScoreSequence(ml, seq));
            seq.Dispose();
        }
        finally { File.Delete(vocab); }
    }
}

/// <summary>Runs the fixture writer only when asked (LA_WRITE_MODEL_FIXTURES=1): fixtures are made once per ML.NET version.</summary>
public sealed class ModelFixtureWriterFactAttribute : FactAttribute
{
    public ModelFixtureWriterFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("LA_WRITE_MODEL_FIXTURES") != "1")
            Skip = "Writes Fixtures/mlnet-<loaded version>/; set LA_WRITE_MODEL_FIXTURES=1 to run it (once, with the ML.NET version to record).";
    }
}

using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Hosting;

/// <summary>A model that does not fit the output class, or cannot be read, fails at load and at reload with the path named.</summary>
public sealed class PredictionPoolFitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-poolfit-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public sealed class NamedPrediction
    {
        public string Predicted { get; set; } = "";
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    public sealed class TypoPrediction
    {
        public uint PredictedLable { get; set; } // misspelt: the model writes PredictedLabel
    }

    /// <summary>A tiny classifier; with <paramref name="classNames"/> its pipeline also writes the class name to 'Predicted'.</summary>
    private static void SaveClassifier(string path, bool classNames)
    {
        var ml = new MLContext(1);
        var o = CheckpointTests.Options(checkpoints: null!);
        o.CheckpointDirectory = null;
        o.MaxEpochs = 1;
        o.LogEverySteps = 0;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(16));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o));
        var model = classNames
            ? (ITransformer)pipeline.Append(ml.Transforms.Conversion.MapKeyToValue("Predicted", "PredictedLabel")).Fit(data)
            : pipeline.Fit(data);
        var temp = path + ".tmp";
        ml.Model.Save(model, data.Schema, temp);
        (model as IDisposable)?.Dispose();
        File.Move(temp, path, overwrite: true);
    }

    [Fact]
    public void AnOutputMemberTheModelDoesNotWriteFailsAtStartup()
    {
        var path = Path.Combine(_dir, "model.zip");
        SaveClassifier(path, classNames: false);
        var e = Assert.Throws<InvalidOperationException>(() => new LinearAttentionPredictionPool<SentimentRow, TypoPrediction>(path, new() { WatchForChanges = false }));
        Assert.Contains("'PredictedLable'", e.Message);
        Assert.Contains("PredictedLabel", e.Message); // the columns it could have meant
        Assert.Contains(path, e.Message);

        // A plain ML.NET model (no ML.LinearAttention transformer) loads, but writes no 'Predicted' either.
        var plain = Path.Combine(_dir, "plain.zip");
        var ml = new MLContext(1);
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(4));
        ml.Model.Save(ml.Transforms.CopyColumns("Copy", "Text").Fit(data), data.Schema, plain);
        var p = Assert.Throws<InvalidOperationException>(() => new LinearAttentionPredictionPool<SentimentRow, NamedPrediction>(plain, new() { WatchForChanges = false }));
        Assert.Contains("'Predicted'", p.Message);
        Assert.Contains("MapKeyToValue", p.Message);
    }

    [Fact]
    public async Task AReloadThatDoesNotFitKeepsTheServedModel()
    {
        var path = Path.Combine(_dir, "model.zip");
        SaveClassifier(path, classNames: true);
        using var pool = new LinearAttentionPredictionPool<SentimentRow, NamedPrediction>(path, new() { WatchForChanges = false });
        var row = PersistenceTests.SmallRows(1)[0];
        var before = pool.Predict(row);
        Assert.Contains(before.Predicted, new[] { "positive", "negative" });

        SaveClassifier(path, classNames: false); // the same task, without the class names the output class reads
        ModelReloadedEventArgs? seen = null;
        pool.Reloaded += (_, e) => seen = e;
        Assert.False(await pool.ReloadAsync());
        Assert.Contains("'Predicted'", seen!.Error!.Message);
        Assert.Equal(1, pool.Version);
        Assert.Equal(before.Predicted, pool.Predict(row).Predicted);

        // A damaged file: the error names the file, not "The model stream".
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        Assert.False(await pool.ReloadAsync());
        Assert.IsType<ModelFormatException>(seen.Error);
        Assert.Contains(path, seen.Error!.Message);
        Assert.DoesNotContain("model stream", seen.Error.Message);
    }
}

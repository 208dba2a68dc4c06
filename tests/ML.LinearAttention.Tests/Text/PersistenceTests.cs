using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Xunit;
using Xunit.Abstractions;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Tests.Text;

public sealed class PersistenceTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-persist-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static List<SentimentRow> SmallRows(int n)
    {
        var words = new[] { "great", "awful", "fine", "bad", "good", "terrible", "love", "hate", "okay", "superb" };
        var rng = new Random(3);
        return Enumerable.Range(0, n).Select(i =>
        {
            var text = string.Join(" ", Enumerable.Range(0, 3 + rng.Next(8)).Select(_ => words[rng.Next(words.Length)]));
            int pos = text.Split(' ').Count(w => w is "great" or "fine" or "good" or "love" or "superb");
            return new SentimentRow { Text = text, Sentiment = pos * 2 >= text.Split(' ').Length ? "positive" : "negative" };
        }).ToList();
    }

    private static (ITransformer Model, IDataView Train) FitSmall(MLContext ml)
    {
        var train = ml.Data.LoadFromEnumerable(SmallRows(96));
        var o = TextClassificationTests.Tiny();
        o.MaxEpochs = 1;
        o.BatchSize = 16;
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(train);
        return (model, train);
    }

    private static string Bits(float f) => BitConverter.SingleToInt32Bits(f).ToString("x8", CultureInfo.InvariantCulture);

    [Fact]
    public async Task SaveThenLoadInAFreshProcessGivesBitIdenticalPredictions()
    {
        var ml = new MLContext(seed: 1);
        var (model, train) = FitSmall(ml);
        var path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, train.Schema, path);

        var rows = SmallRows(40).Skip(20).ToList();
        var rowsPath = Path.Combine(_dir, "rows.tsv");
        File.WriteAllLines(rowsPath, rows.Select(r => r.Text + "\t" + r.Sentiment));
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        var keys = scored.GetColumn<uint>("PredictedLabel").ToList();
        var scores = scored.GetColumn<float[]>("Score").ToList();
        var expected = keys.Select((k, i) => k + " " + string.Join(" ", scores[i].Select(Bits))).ToList();

        var host = ModelHostPath();
        var outPath = Path.Combine(_dir, "out.txt");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { host, path, rowsPath, outPath }) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        string err = await stderr;
        output.WriteLine(await stdout + err);
        Assert.True(process.ExitCode == 0, $"model host failed ({process.ExitCode}): {err}");

        var lines = File.ReadAllLines(outPath);
        Assert.Equal(expected, lines.Take(expected.Count).ToList());
        // The PredictionEngine of the fresh process (one row, so no padding: last-bit differences allowed) agrees with
        // the batched Transform of this process for the first row.
        var engine = lines[^1].Split(' ');
        Assert.Equal("engine", engine[0]);
        Assert.Equal(keys[0].ToString(CultureInfo.InvariantCulture), engine[1]);
        var engineScores = engine.Skip(2).Select(h => BitConverter.Int32BitsToSingle(int.Parse(h, NumberStyles.HexNumber))).ToArray();
        Assert.Equal(scores[0].Length, engineScores.Length);
        for (int i = 0; i < engineScores.Length; i++) Assert.Equal(scores[0][i], engineScores[i], 5);
        (model as IDisposable)?.Dispose();
    }

    [Fact]
    public void SaveLoadInProcessAndWeightsAloneRoundTrip()
    {
        var ml = new MLContext(seed: 1);
        var (model, train) = FitSmall(ml);
        var path = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, train.Schema, path);
        var rows = ml.Data.LoadFromEnumerable(SmallRows(30));
        var before = model.Transform(rows).GetColumn<float[]>("Score").ToList();

        var fresh = new MLContext();
        var loaded = LinearAttentionModel.Load(fresh, path, out var schema);
        Assert.NotNull(schema.GetColumnOrNull("Sentiment"));
        var after = loaded.Transform(rows).GetColumn<float[]>("Score").ToList();
        Assert.Equal(before.SelectMany(x => x), after.SelectMany(x => x));

        // Weights alone: save from the trained transformer, load into the loaded one after scrambling it.
        var trained = ((IEnumerable<ITransformer>)model).OfType<TextClassificationTransformer>().Single();
        var copy = ((IEnumerable<ITransformer>)loaded).OfType<TextClassificationTransformer>().Single();
        var weights = Path.Combine(_dir, "weights.bin");
        trained.SaveWeights(weights);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
        copy.LoadWeights(weights);
        Assert.Equal(before.SelectMany(x => x), loaded.Transform(rows).GetColumn<float[]>("Score").SelectMany(x => x));
        (model as IDisposable)?.Dispose();
        (loaded as IDisposable)?.Dispose();
    }

    private static string ModelHostPath()
    {
        // tests/ML.LinearAttention.Tests/bin/<Configuration>/<tfm>/ → tests/ML.LinearAttention.ModelHost/bin/<Configuration>/<tfm>/
        var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = tfm.Parent!;
        var testsDir = configuration.Parent!.Parent!.Parent!;
        var path = Path.Combine(testsDir.FullName, "ML.LinearAttention.ModelHost", "bin", configuration.Name, tfm.Name, "ML.LinearAttention.ModelHost.dll");
        Assert.True(File.Exists(path), $"The model host was not built at {path}; build the solution (the test project builds it through a ProjectReference).");
        return path;
    }
}

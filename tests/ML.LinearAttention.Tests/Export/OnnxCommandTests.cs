using System.Text.Json;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Tests.Text;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>The samples' `export-onnx` command and `bench onnx` end to end at tiny sizes.</summary>
public sealed class OnnxCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-onnx-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task ExportOnnxWritesGraphContractAndVocabularyOrAPlainError()
    {
        var ml = new MLContext(seed: 1);
        var o = TextClassificationTests.Tiny();
        o.MaxEpochs = 1;
        var data = ml.Data.LoadFromEnumerable(PersistenceTests.SmallRows(32));
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Sentiment")
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Text" }, options: o))
            .Fit(data);
        var zip = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, data.Schema, zip);
        model.Dispose();

        var output = new StringWriter();
        var error = new StringWriter();
        var runner = new CommandRunner(output, error);
        var graph = Path.Combine(_dir, "model.onnx");
        Assert.Equal(0, await runner.RunAsync(new[] { "export-onnx", zip, graph }, default));
        Assert.True(File.Exists(graph) && File.Exists(graph + ".json") && File.Exists(Path.Combine(_dir, "model.vocab.txt")));
        Assert.Contains("inputs: input_ids, attention_mask; outputs: scores, predicted_label", output.ToString());

        Assert.Equal(2, await runner.RunAsync(new[] { "export-onnx", Path.Combine(_dir, "missing.zip"), graph }, default));
        Assert.StartsWith("error: ", error.ToString());
        Assert.Equal(2, await runner.RunAsync(new[] { "export-onnx", zip }, default));
        Assert.Contains("export-onnx MODEL.zip OUT.onnx", error.ToString());
    }

    /// <summary>Runs `bench onnx` with <paramref name="args"/> into the test folder: the cases' JSON rows and the markdown.</summary>
    private (List<JsonElement> Results, string Markdown) Bench(params string[] args)
    {
        var o = OnnxBenchmark.Parse(args.Concat(new[] { "--latency-rows", "3", "--no-publish", "--data", SharedData.Root, "--out", _dir,
                                                        "--commit", "test", "--machine", "test machine" }).ToArray());
        Assert.Equal(0, OnnxBenchmark.Run(o, new StringWriter()));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "onnx.json")));
        return (json.RootElement.GetProperty("Results").EnumerateArray().Select(r => r.Clone()).ToList(), File.ReadAllText(Path.Combine(_dir, "onnx.md")));
    }

    [SharedDataFact("sst2")]
    public void BenchOnnxRunsEndToEndAndWritesItsRecord()
    {
        var (results, md) = Bench("--train", "64", "--rows", "24", "--only", "linear_relu,hybrid");
        Assert.Equal(new[] { "linear_relu", "hybrid" }, results.Select(r => r.GetProperty("Case").GetString()));
        Assert.All(results, r => Assert.True(r.GetProperty("MaxAbsDelta").GetDouble() <= 1e-4 && r.GetProperty("OnnxRowsPerSecond").GetDouble() > 0, r.ToString()));
        Assert.Contains("at commit test on test machine", md);
        Assert.Contains("| hybrid | hybrid: hedgehog + softmax@1 | 24 |", md);
        Assert.Throws<ArgumentException>(() => OnnxBenchmark.Parse(new[] { "--only", "gla" }));
    }

    [SharedDataFact("mnist-t10k")]
    public void BenchOnnxImageCasesScoreMnistBothWays()
    {
        var (results, md) = Bench("--image-train", "96", "--image-rows", "40", "--only", "image_mala,image_softmax");
        Assert.Equal(new[] { "image_mala", "image_softmax" }, results.Select(r => r.GetProperty("Case").GetString()));
        Assert.All(results, r => Assert.True(r.GetProperty("Rows").GetInt32() == 40 && r.GetProperty("MaxAbsDelta").GetDouble() <= 1e-4 &&
                                             r.GetProperty("Agreement").GetDouble() == 1, r.ToString()));
        Assert.Contains("The `image_` cases are small patch-encoder digit classifiers", md);
        var e = Assert.Throws<ArgumentException>(() => OnnxBenchmark.Parse(new[] { "--only", "image_rala" }));
        Assert.Contains("image_mala", e.Message);
    }
}

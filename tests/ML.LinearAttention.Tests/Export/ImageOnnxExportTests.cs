using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Tests.Vision;
using Microsoft.ML.Transforms.Image;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>
/// A fitted ImageClassificationTransformer exported with <see cref="LinearAttentionOnnx"/> and scored by plain ML.NET
/// (ExtractPixels as the contract describes, then ApplyOnnxModel): the same probabilities as <c>Transform</c>, the same
/// classes; the export-onnx command writes the same graph from a saved model.
/// </summary>
public sealed class ImageOnnxExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-onnx-img-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class OnnxScores
    {
        [ColumnName("scores")] public float[] Scores { get; set; } = Array.Empty<float>();
        [ColumnName("predicted_label")] public long[] PredictedLabel { get; set; } = Array.Empty<long>();
    }

    [SharedDataFact(ImageData.Mnist)]
    public async Task ExportedDigitClassifierScoresLikeTransformThroughExtractPixelsAndApplyOnnxModel()
    {
        var ml = new MLContext(seed: 5);
        var o = ImageClassificationTests.TinyDigits();
        o.MaxEpochs = 3;
        Assert.Equal("mala", o.Attention);                     // the default image mechanism
        o.BatchSize = 16;
        o.Augment = false;
        var train = ml.Data.LoadFromEnumerable(ImageData.MnistRows(0, 640));
        var model = ml.Transforms.Conversion.MapValueToKey("Label", "Digit")
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: o))
            .Fit(train);
        var transformer = model.LastTransformer;
        var test = ml.Data.LoadFromEnumerable(ImageData.MnistRows(9000, 48));
        var scored = model.Transform(test);
        var expected = scored.GetColumn<float[]>("Score").ToArray();
        var expectedClass = scored.GetColumn<uint>("PredictedLabel").Select(k => (long)k - 1).ToArray();

        var result = LinearAttentionOnnx.Export(transformer, Path.Combine(_dir, "digits.onnx"));
        var contract = OnnxScoringContract.FromJson(File.ReadAllText(result.ContractPath));
        Assert.Equal("ImageClassification", contract.Task);
        Assert.Null(result.VocabularyPath);
        Assert.Null(contract.Tokenizer);
        Assert.Equal(("image", 28, 28, "CenterCrop", "Image"), (contract.Inputs.Image, contract.Image!.Width, contract.Image.Height, contract.Image.Resize, contract.Image.Column));
        Assert.Equal(transformer.ClassNames, contract.Labels);

        // What a TorchSharp-free ML.NET app does with the contract: the images are already 28×28, so no resize; planes
        // R, G, B of 0..255 floats; the graph normalises.
        var pipeline = ml.Transforms.ExtractPixels(contract.Inputs.Image!, "Image", colorsToExtract: ImagePixelExtractingEstimator.ColorBits.Rgb,
                orderOfExtraction: ImagePixelExtractingEstimator.ColorsOrder.ARGB, interleavePixelColors: false)
            .Append(ml.Transforms.ApplyOnnxModel(new[] { contract.Outputs.Scores, contract.Outputs.PredictedLabel! }, new[] { contract.Inputs.Image! }, result.GraphPath));
        using var onnx = pipeline.Fit(test);
        var actual = ml.Data.CreateEnumerable<OnnxScores>(onnx.Transform(test), reuseRowObject: false).ToList();
        OnnxParity.AssertClose(expected, actual.Select(a => a.Scores).ToArray(), what: "digits");
        Assert.Equal(expectedClass, actual.Select(a => a.PredictedLabel[0]));
        Assert.True(expectedClass.Distinct().Count() > 1, "every row got the same class: the comparison would prove little");

        // The command line exports the same model from its saved zip.
        var zip = Path.Combine(_dir, "digits.zip");
        ml.Model.Save(model, train.Schema, zip);
        model.Dispose();
        var output = new StringWriter();
        var runner = new CommandRunner(output, new StringWriter());
        Assert.Equal(0, await runner.RunAsync(new[] { "export-onnx", zip, Path.Combine(_dir, "cli.onnx") }, default));
        Assert.Contains("input: image float [batch, 3, 28, 28]", output.ToString());
        Assert.True(File.Exists(Path.Combine(_dir, "cli.onnx.json")));
        Assert.Equal(File.ReadAllBytes(result.GraphPath), File.ReadAllBytes(Path.Combine(_dir, "cli.onnx")));
    }
}

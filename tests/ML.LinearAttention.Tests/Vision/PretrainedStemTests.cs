using System.Diagnostics;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using Microsoft.ML.LinearAttention.Tests.Text;
using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Tests.Vision;

/// <summary>The ResNet18 of Microsoft.ML.DnnImageFeaturizer.ResNet18 imported as a TorchSharp stem, against ONNX Runtime.</summary>
public sealed class PretrainedStemTests(ITestOutputHelper output)
{
    private static ImportedStem Import(int level)
    {
        var (model, prep) = PretrainedImageModels.LocateResNet18();
        return OnnxStemImporter.Import(File.ReadAllBytes(model), File.ReadAllBytes(prep), level, "ResNet18.onnx");
    }

    [SharedDataFact(ImageData.Flowers)]
    public void StemFeaturesMatchOnnxRuntimeOnRealPhotos()
    {
        var sw = Stopwatch.StartNew();
        Torch.Seed();
        Microsoft.ML.LinearAttention.Runtime.TorchRuntime.SetCpuThreads(2);
        var stem = Import(4);
        using var graph = new ConvGraph(stem.Spec, stem.Bgr, stem.MeanHeight, stem.MeanWidth);
        graph.Load(stem);
        graph.eval();

        var (modelPath, prepPath) = PretrainedImageModels.LocateResNet18();
        using var prepSession = new InferenceSession(prepPath);
        using var session = new InferenceSession(modelPath);
        var files = ImageData.FlowerIndex().GroupBy(r => r.Flower).Select(g => g.First().Path).Take(4).ToList();
        var geometry = new ImageGeometry(224, 224, ImageResizeMode.CenterCrop);
        double worst = 0;
        foreach (var file in files)
        {
            var rgb = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(ImageData.FlowersFolder, file)), geometry);
            var planar = new float[3 * 224 * 224];
            for (int i = 0; i < 224 * 224; i++)
                for (int c = 0; c < 3; c++) planar[c * 224 * 224 + i] = rgb[i * 3 + c];

            // ONNX Runtime: ML.NET's own pipeline, ResNetPreprocess.onnx (RGB → BGR − mean image) then ResNet18.onnx.
            var input = new DenseTensor<float>(planar, new[] { 1, 3, 224, 224 });
            using var prepOut = prepSession.Run(new[] { NamedOnnxValue.CreateFromTensor(prepSession.InputMetadata.Keys.First(), input) });
            var prepared = prepOut.First().AsTensor<float>();
            using var outs = session.Run(new[] { NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), prepared) });
            var expected = outs.First().AsEnumerable<float>().ToArray();                 // [1, 512, 1, 1]

            using var _ = no_grad();
            using var x = torch.tensor(planar, new long[] { 1, 3, 224, 224 });
            using var map = graph.forward(x);
            Assert.Equal(new long[] { 1, 512, 7, 7 }, map.shape);
            var actual = map.mean(new long[] { 2, 3 }).flatten().data<float>().ToArray();
            double scale = expected.Max(Math.Abs);
            double diff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
            worst = Math.Max(worst, diff / scale);
            output.WriteLine($"{file}: max |Δ| {diff:G3} of max |feature| {scale:G3}");
        }
        output.WriteLine($"worst relative difference {worst:G3} over {files.Count} photos in {sw.Elapsed.TotalSeconds:F1}s");
        Assert.True(worst < 1e-4, $"stem features differ from ONNX Runtime by {worst:G3} (relative)");
    }

    [Fact]
    public void LevelsCutTheNetworkAtEachResidualStageAndAnySizeRuns()
    {
        Torch.Seed();
        var expected = new[] { (64, 4), (128, 8), (256, 16), (512, 32) };
        for (int level = 1; level <= 4; level++)
        {
            var stem = Import(level);
            Assert.Equal(4, stem.Levels);
            Assert.Equal(expected[level - 1], (stem.Spec.OutputChannels, stem.Spec.TotalStride));
            Assert.True(stem.Bgr);
            Assert.Equal((224, 224), (stem.MeanHeight, stem.MeanWidth));
        }
        // An odd size: the stride-2 layers recompute their "same" pads, so the residual branches still meet.
        var spec = Import(4).Spec;
        using var graph = new ConvGraph(spec, true, 224, 224);
        using var _ = no_grad();
        using var y = graph.forward(torch.rand(1, 3, 100, 100) * 255);
        Assert.Equal(new long[] { 1, 512, 4, 4 }, y.shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => Import(5));
    }

    [Fact]
    public void MissingModelFileSaysWhichPackageToReference()
    {
        var e = Assert.Throws<FileNotFoundException>(() => PretrainedImageModels.LocateResNet18("/nonexistent/ResNet18.onnx"));
        Assert.Contains("PretrainedModelPath", e.Message);
        var dir = Directory.CreateTempSubdirectory("la-nostem-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "ResNet18.onnx"), new byte[] { 1 });
            var e2 = Assert.Throws<FileNotFoundException>(() => PretrainedImageModels.LocateResNet18(Path.Combine(dir, "ResNet18.onnx")));
            Assert.Contains(PretrainedImageModels.ResNet18Package, e2.Message);
            var e3 = Assert.Throws<FileNotFoundException>(() => PretrainedImageModels.LocateResNet18(null, new[] { dir }));
            Assert.Contains($"Reference the NuGet package {PretrainedImageModels.ResNet18Package} 0.24.0", e3.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}

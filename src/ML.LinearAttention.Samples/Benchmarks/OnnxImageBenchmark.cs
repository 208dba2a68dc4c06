using System.Diagnostics;
using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Microsoft.ML.Transforms.Image;
using Microsoft.ML.LinearAttention.Vision;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The image cases of `bench onnx`: a small patch-encoder digit classifier per exportable image mechanism, fitted on
/// real MNIST test-set images (mnist-t10k of ../shared/data), exported, and scored on held-out images by TorchSharp
/// (ML.NET Transform; a prediction engine for one image) and by ONNX Runtime over the pixel planes the scoring contract
/// describes (R, G, B as 0–255 floats; the graph normalises).
/// </summary>
internal static class OnnxImageBenchmark
{
    private const int Side = 28;

    internal static readonly (string Name, string Description, string Attention)[] Cases =
    {
        ("image_mala", "image: MALA (the image default)", "mala"),
        ("image_linear", "image: linear, elu+1", "linear"),
        ("image_hedgehog", "image: Hedgehog", "hedgehog"),
        ("image_softmax", "image: softmax (SDPA)", "softmax"),
    };

    /// <summary>One MNIST image: as ML.NET reads it, its label, and the raw 28×28 grey pixels ONNX Runtime is fed.</summary>
    internal sealed class Digit
    {
        [ImageType(Side, Side)] public MLImage Image { get; set; } = null!;
        public string Label { get; set; } = "";
        public byte[] Pixels { get; set; } = Array.Empty<byte>();
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = Array.Empty<float>();
    }

    /// <summary>The first <paramref name="count"/> images of the MNIST test set after <paramref name="skip"/>.</summary>
    private static List<Digit> Load(string data, int skip, int count)
    {
        var dir = Path.Combine(data, "mnist-t10k");
        var imagesPath = Path.Combine(dir, "t10k-images-idx3-ubyte.gz");
        if (!File.Exists(imagesPath)) throw new FileNotFoundException($"MNIST is not at {imagesPath}; pass --data with the folder holding mnist-t10k/ (the repository's ../shared/data).", imagesPath);
        if (skip + count > 10_000) throw new ArgumentException($"MNIST t10k has 10,000 images; --image-train and --image-rows ask for {skip + count:N0}.");
        using var images = new GZipStream(File.OpenRead(imagesPath), CompressionMode.Decompress);
        using var labels = new GZipStream(File.OpenRead(Path.Combine(dir, "t10k-labels-idx1-ubyte.gz")), CompressionMode.Decompress);
        images.ReadExactly(new byte[16]);
        labels.ReadExactly(new byte[8]);
        var rows = new List<Digit>(count);
        var label = new byte[1];
        for (int i = 0; i < skip + count; i++)
        {
            var pixels = new byte[Side * Side];
            images.ReadExactly(pixels);
            labels.ReadExactly(label);
            if (i < skip) continue;
            var bgra = new byte[pixels.Length * 4];
            for (int j = 0; j < pixels.Length; j++) { bgra[4 * j] = bgra[4 * j + 1] = bgra[4 * j + 2] = pixels[j]; bgra[4 * j + 3] = 255; }
            rows.Add(new Digit { Image = MLImage.CreateFromPixels(Side, Side, MLPixelFormat.Bgra32, bgra), Label = label[0].ToString(), Pixels = pixels });
        }
        return rows;
    }

    /// <summary>Loads the training and scored images once for every image case.</summary>
    internal static (List<Digit> Train, List<Digit> Test) Data(OnnxBenchmark.Options o)
        => (Load(o.Data, 0, o.ImageTrain), Load(o.Data, 10_000 - o.ImageRows, o.ImageRows));

    internal static OnnxBenchmark.Result Measure((string Name, string Description, string Attention) c, List<Digit> train, List<Digit> test,
        OnnxBenchmark.Options o, string graphPath)
    {
        var ml = new MLContext(seed: 1);
        var options = new ImageClassificationOptions
        {
            ImageWidth = Side, ImageHeight = Side, PatchSize = 4, ModelDimension = 64, NumberOfLayers = 2, NumberOfHeads = 4,
            Attention = c.Attention, HorizontalFlip = false, BatchSize = 32, MaxEpochs = 2, LearningRate = 3e-3,
            LogEverySteps = 0, CpuThreads = o.Threads, InferenceBatchSize = 64,
        };
        var (model, fitSeconds, torchScores, torchRate) = OnnxBenchmark.FitAndScore(ml, ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Transforms.LinearAttention.ImageClassification(options: options)), train, test);
        var transformer = model.LastTransformer;

        var export = LinearAttentionOnnx.Export(transformer, graphPath);
        var image = export.Contract.Image ?? throw new InvalidOperationException("The image export wrote no image preparation into its contract.");
        if (image.Width != Side || image.Height != Side) throw new InvalidOperationException($"The contract asks for {image.Width}×{image.Height} images; the benchmark feeds {Side}×{Side}.");
        using var session = new InferenceSession(graphPath, new SessionOptions { IntraOpNumThreads = o.Threads, InterOpNumThreads = 1 });
        float[][] Score(IReadOnlyList<Digit> rows) => RunOnnx(session, rows);
        Score(test.Take(64).ToList());
        var watch = Stopwatch.StartNew();
        var onnxScores = new List<float[]>();
        for (int i = 0; i < test.Count; i += options.InferenceBatchSize) onnxScores.AddRange(Score(test.Skip(i).Take(options.InferenceBatchSize).ToList()));
        double onnxRate = test.Count / watch.Elapsed.TotalSeconds;

        var (maxDelta, agreement, accuracy) = OnnxBenchmark.Compare(torchScores, onnxScores, transformer.ClassNames!, test.Select(d => d.Label).ToList());
        var latencyRows = test.Take(o.LatencyRows).ToList();
        using var engine = ml.Model.CreatePredictionEngine<Digit, Scored>(model);
        engine.Predict(latencyRows[0]);
        double torchP50 = OnnxBenchmark.Median(latencyRows.Select(r => OnnxBenchmark.Time(() => engine.Predict(r))));
        double onnxP50 = OnnxBenchmark.Median(latencyRows.Select(r => OnnxBenchmark.Time(() => Score(new[] { r }))));
        model.Dispose();
        return new OnnxBenchmark.Result(c.Name, c.Description, test.Count, maxDelta, agreement, accuracy, export.Nodes,
            torchRate, onnxRate, torchP50, onnxP50, fitSeconds);
    }

    /// <summary>Planes R, G, B of 0–255 floats, [B, 3, 28, 28], as the contract's preparation block describes.</summary>
    private static float[][] RunOnnx(InferenceSession session, IReadOnlyList<Digit> rows)
    {
        int b = rows.Count, plane = Side * Side;
        var pixels = new DenseTensor<float>(new[] { b, 3, Side, Side });
        var buffer = pixels.Buffer.Span;
        for (int i = 0; i < b; i++)
            for (int ch = 0; ch < 3; ch++)
                for (int j = 0; j < plane; j++) buffer[(i * 3 + ch) * plane + j] = rows[i].Pixels[j];
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(VisionModelExport.Image, pixels) });
        var scores = results.First(r => r.Name == VisionModelExport.Scores).AsTensor<float>();
        int k = scores.Dimensions[1];
        var flat = scores.ToArray();
        return Enumerable.Range(0, b).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray();
    }
}

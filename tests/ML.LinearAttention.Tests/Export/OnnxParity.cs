using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Export;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Export;

/// <summary>Runs an exported graph in ONNX Runtime on the same padded rows TorchSharp scored, and compares.</summary>
internal static class OnnxParity
{
    /// <summary>The rows as the graph's inputs: ids padded with <paramref name="padId"/>, mask, segments, side features.</summary>
    public static List<NamedOnnxValue> Inputs(IReadOnlyList<Example> rows, int padId, bool segments, int side)
    {
        int b = rows.Count, t = rows.Max(r => r.Ids!.Length);
        var ids = new DenseTensor<long>(new[] { b, t });
        var mask = new DenseTensor<long>(new[] { b, t });
        var seg = new DenseTensor<long>(new[] { b, t });
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++)
            {
                bool real = j < rows[i].Ids!.Length;
                ids[i, j] = real ? rows[i].Ids![j] : padId;
                mask[i, j] = real ? 1 : 0;
                seg[i, j] = real ? rows[i].Segments![j] : 0;
            }
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor(SequenceModelExport.InputIds, ids),
            NamedOnnxValue.CreateFromTensor(SequenceModelExport.AttentionMask, mask),
        };
        if (segments) inputs.Add(NamedOnnxValue.CreateFromTensor(SequenceModelExport.SegmentIds, seg));
        if (side > 0)
        {
            var s = new DenseTensor<float>(new[] { b, side });
            for (int i = 0; i < b; i++) for (int j = 0; j < side; j++) s[i, j] = rows[i].Side![j];
            inputs.Add(NamedOnnxValue.CreateFromTensor(SequenceModelExport.SideFeatures, s));
        }
        return inputs;
    }

    /// <summary>Runs <paramref name="graph"/> and returns the named output as [rows][values].</summary>
    public static float[][] Run(byte[] graph, IReadOnlyList<NamedOnnxValue> inputs, string output)
    {
        using var session = new InferenceSession(graph);
        using var results = session.Run(inputs);
        var tensor = results.First(r => r.Name == output).AsTensor<float>();
        int rows = tensor.Dimensions[0], width = tensor.Dimensions.Length > 1 ? tensor.Dimensions[1] : 1;
        var flat = tensor.ToArray();
        return Enumerable.Range(0, rows).Select(i => flat.AsSpan(i * width, width).ToArray()).ToArray();
    }

    /// <summary>TorchSharp's eval-mode scores: softmax of the logits (classification) or the destandardized value.</summary>
    public static float[][] Torch(SequenceModel model, IReadOnlyList<Example> rows, int side, SequenceExportTask task)
    {
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var batch = Batching.Collate(rows, CPU, model.Config.PadId, 0, side, null, LabelKind.Key);
        var output = model.Forward(batch);
        var scores = task == SequenceExportTask.Classification ? output.softmax(-1) : model.DestandardizeTarget(output);
        int width = (int)scores.shape[1];
        var flat = scores.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        return Enumerable.Range(0, rows.Count).Select(i => flat.AsSpan(i * width, width).ToArray()).ToArray();
    }

    /// <summary>Largest absolute difference; fails above <paramref name="tolerance"/>.</summary>
    public static double AssertClose(float[][] expected, float[][] actual, double tolerance = 1e-4, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].Length, actual[i].Length);
            for (int j = 0; j < expected[i].Length; j++) max = Math.Max(max, Math.Abs(expected[i][j] - actual[i][j]));
        }
        Assert.True(max <= tolerance, $"{what}: ONNX Runtime and TorchSharp differ by {max:E2} (> {tolerance:E0}).");
        return max;
    }
}

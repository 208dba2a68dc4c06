using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.FineTuning;

/// <summary>Tiny encoders and batches for the fine-tuning tests.</summary>
internal static class TinyModels
{
    public static EncoderConfig Config(string mixer = "linear", Pooling pooling = Pooling.Mean, int layers = 2, int side = 0) => new()
    {
        VocabularySize = 60, PadId = 0, ModelDim = 16, NumLayers = layers, NumHeads = 2, FfnMultiplier = 2, Dropout = 0,
        Mixer = mixer, Pooling = pooling, Outputs = 3, SideFeatures = side, Position = mixer == "gla" ? PositionEncoding.None : PositionEncoding.Rope,
    };

    public static Example Row(int length, int seed, int side = 0) => new()
    {
        Ids = Enumerable.Range(0, length).Select(i => 1 + (i * 7 + seed * 13) % 59).ToArray(),
        Segments = new int[length],
        Side = side == 0 ? null : Enumerable.Range(0, side).Select(i => (float)Math.Sin(seed + i)).ToArray(),
        Label = seed % 3,
        Length = length,
    };

    public static ModelBatch Batch(IReadOnlyList<Example> rows, int side = 0)
        => Batching.Collate(rows, CPU, 0, 0, side, null, LabelKind.Key);

    public static ModelBatch Batch(params int[] lengths)
        => Batch(lengths.Select((l, i) => Row(l, i + 1)).ToList());

    /// <summary>Forward in eval mode without gradients.</summary>
    public static Tensor Eval(SequenceModel model, ModelBatch batch)
    {
        model.eval();
        using var _ = no_grad();
        return model.Forward(batch);
    }
}

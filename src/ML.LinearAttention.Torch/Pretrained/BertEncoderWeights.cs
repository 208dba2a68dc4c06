using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// The one place where a BERT checkpoint meets the library's encoder: the <see cref="EncoderConfig"/> of a checkpoint
/// (<see cref="EncoderArchitecture.BertPostNorm"/>, softmax attention, the checkpoint's sizes) and the mapping of
/// Hugging Face parameter names (<see cref="BertNames"/>) to <see cref="SequenceModel"/> parameter names.
/// </summary>
public static class BertEncoderWeights
{
    /// <summary>
    /// The encoder configuration that a checkpoint loads into: BERT layout, learned positions, softmax attention in every
    /// layer (q/k/v/o with biases). Task-side fields (pooling, dropout, segments, head outputs, side features) come from
    /// <paramref name="task"/>; every size comes from the checkpoint.
    /// </summary>
    public static EncoderConfig ConfigFor(BertConfig bert, int padId, EncoderConfig? task = null)
    {
        ArgumentNullException.ThrowIfNull(bert);
        bert.Validate();
        var t = task ?? new EncoderConfig { Outputs = 1 };
        return t with
        {
            Architecture = EncoderArchitecture.BertPostNorm,
            VocabularySize = bert.VocabSize,
            PadId = padId,
            NumericFeatures = 0,
            ModelDim = bert.HiddenSize,
            NumLayers = bert.NumLayers,
            NumHeads = bert.NumHeads,
            FfnHiddenSize = bert.IntermediateSize,
            FfnMultiplier = (double)bert.IntermediateSize / bert.HiddenSize,
            Position = PositionEncoding.Learned,
            MaxPositions = bert.MaxPositions,
            TokenTypes = bert.TypeVocabSize,
            LayerNormEpsilon = bert.LayerNormEps,
            Activation = bert.Activation,
            Mixer = "softmax",
            MixerOptionsJson = null,
            Layers = null,
        };
    }

    /// <summary>
    /// (our parameter name, Hugging Face name) of every BERT weight an encoder of <paramref name="numLayers"/> layers
    /// takes. The pooler is not mapped (the heads pool themselves).
    /// </summary>
    public static IReadOnlyList<(string Ours, string Bert)> NameMap(int numLayers)
    {
        var map = new List<(string, string)>
        {
            ("token_embedding.weight", BertNames.WordEmbeddings),
            ("position_embedding.weight", BertNames.PositionEmbeddings),
            ("segment_embedding.weight", BertNames.TokenTypeEmbeddings),
            ("embedding_norm.weight", BertNames.EmbeddingsLayerNorm + ".weight"),
            ("embedding_norm.bias", BertNames.EmbeddingsLayerNorm + ".bias"),
        };
        for (int i = 0; i < numLayers; i++)
        {
            string b = $"blocks.{i}.";
            foreach (var (ours, bert) in new[]
            {
                ("mixer.q_proj", BertNames.Query(i)), ("mixer.k_proj", BertNames.Key(i)), ("mixer.v_proj", BertNames.Value(i)),
                ("mixer.o_proj", BertNames.AttentionOutput(i)), ("attention_norm", BertNames.AttentionLayerNorm(i)),
                ("ffn_in", BertNames.Intermediate(i)), ("ffn_out", BertNames.Output(i)), ("ffn_norm", BertNames.OutputLayerNorm(i)),
            })
            {
                map.Add((b + ours + ".weight", bert + ".weight"));
                map.Add((b + ours + ".bias", bert + ".bias"));
            }
        }
        return map;
    }

    /// <summary>
    /// Copies the checkpoint's weights into <paramref name="model"/> (built from <see cref="ConfigFor"/>, or any BERT-layout
    /// model of the same sizes whose mixers have biased q/k/v/o projections). The pooler and the task head are left as
    /// they are. Returns the number of tensors copied.
    /// </summary>
    /// <exception cref="ArgumentException">The model is not a BERT-layout encoder of the checkpoint's sizes, or a layer's
    /// mixer lacks the projections (the message names the parameter).</exception>
    public static int LoadInto(SequenceModel model, BertCheckpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(checkpoint);
        var c = model.Config;
        var b = checkpoint.Config;
        if (c.Architecture != EncoderArchitecture.BertPostNorm)
            throw new ArgumentException($"Pretrained BERT weights need an encoder with Architecture = BertPostNorm; this one is {c.Architecture}.");
        if (c.ModelDim != b.HiddenSize || c.NumLayers != b.NumLayers || c.NumHeads != b.NumHeads || c.FfnHidden != b.IntermediateSize ||
            c.VocabularySize != b.VocabSize || c.MaxPositions != b.MaxPositions || c.TokenTypes != b.TypeVocabSize)
            throw new ArgumentException($"{checkpoint.Source}: the encoder (hidden {c.ModelDim}, {c.NumLayers} layers, {c.NumHeads} heads, FFN {c.FfnHidden}, " +
                                        $"vocabulary {c.VocabularySize}, {c.MaxPositions} positions, {c.TokenTypes} token types) does not have the checkpoint's sizes " +
                                        $"(hidden {b.HiddenSize}, {b.NumLayers} layers, {b.NumHeads} heads, FFN {b.IntermediateSize}, vocabulary {b.VocabSize}, " +
                                        $"{b.MaxPositions} positions, {b.TypeVocabSize} token types); build it with BertEncoderWeights.ConfigFor.");
        var ours = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        int copied = 0;
        using var _ = torch.no_grad();
        foreach (var (name, bertName) in NameMap(c.NumLayers))
        {
            if (!ours.TryGetValue(name, out var target))
            {
                int layer = name.StartsWith("blocks.", StringComparison.Ordinal) ? int.Parse(name.Split('.')[1]) : -1;
                string why = layer >= 0 && name.Contains(".mixer.")
                    ? $" The mixer of layer {layer} ('{c.MixerFor(layer).Name}') has no biased {name.Split('.')[3]} projection: BERT weights fit mixers with q/k/v/o projections (softmax, hedgehog, lolcats, linear, …)."
                    : "";
                throw new ArgumentException($"{checkpoint.Source}: the encoder has no parameter '{name}' for BERT weight '{bertName}'.{why}");
            }
            var w = checkpoint[bertName];
            if (!target.shape.SequenceEqual(w.Shape))
                throw new ArgumentException($"{checkpoint.Source}: BERT weight '{bertName}' {w.ShapeText} does not fit parameter '{name}' [{string.Join(", ", target.shape)}].");
            using var source = tensor(w.Data, w.Shape, target.dtype, target.device);
            target.copy_(source);
            copied++;
        }
        return copied;
    }
}

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>Hugging Face BERT parameter names (no "bert." prefix), the keys of <see cref="BertCheckpoint.Weights"/>.</summary>
public static class BertNames
{
    public const string WordEmbeddings = "embeddings.word_embeddings.weight";
    public const string PositionEmbeddings = "embeddings.position_embeddings.weight";
    public const string TokenTypeEmbeddings = "embeddings.token_type_embeddings.weight";
    public const string EmbeddingsLayerNorm = "embeddings.LayerNorm";
    /// <summary>Optional pooler (tanh dense on [CLS]); not used by mean-pooled sentence encoders.</summary>
    public const string PoolerDense = "pooler.dense";

    /// <summary>The linear layers and LayerNorms of one encoder layer, as prefixes without ".weight"/".bias".</summary>
    public static string Query(int layer) => $"encoder.layer.{layer}.attention.self.query";
    public static string Key(int layer) => $"encoder.layer.{layer}.attention.self.key";
    public static string Value(int layer) => $"encoder.layer.{layer}.attention.self.value";
    public static string AttentionOutput(int layer) => $"encoder.layer.{layer}.attention.output.dense";
    public static string AttentionLayerNorm(int layer) => $"encoder.layer.{layer}.attention.output.LayerNorm";
    public static string Intermediate(int layer) => $"encoder.layer.{layer}.intermediate.dense";
    public static string Output(int layer) => $"encoder.layer.{layer}.output.dense";
    public static string OutputLayerNorm(int layer) => $"encoder.layer.{layer}.output.LayerNorm";

    /// <summary>Every linear layer of one encoder layer with its (out, in) features.</summary>
    public static IEnumerable<(string Prefix, long Out, long In)> Linears(int layer, BertConfig c)
    {
        yield return (Query(layer), c.HiddenSize, c.HiddenSize);
        yield return (Key(layer), c.HiddenSize, c.HiddenSize);
        yield return (Value(layer), c.HiddenSize, c.HiddenSize);
        yield return (AttentionOutput(layer), c.HiddenSize, c.HiddenSize);
        yield return (Intermediate(layer), c.IntermediateSize, c.HiddenSize);
        yield return (Output(layer), c.HiddenSize, c.IntermediateSize);
    }

    /// <summary>Every LayerNorm prefix of the model (embeddings first, then two per layer).</summary>
    public static IEnumerable<string> LayerNorms(BertConfig c)
    {
        yield return EmbeddingsLayerNorm;
        for (int i = 0; i < c.NumLayers; i++)
        {
            yield return AttentionLayerNorm(i);
            yield return OutputLayerNorm(i);
        }
    }

    /// <summary>The required weights of a BERT encoder with this configuration and their shapes (Linear weights [out, in]).</summary>
    public static IReadOnlyDictionary<string, long[]> ExpectedShapes(BertConfig c)
    {
        var shapes = new Dictionary<string, long[]>
        {
            [WordEmbeddings] = new long[] { c.VocabSize, c.HiddenSize },
            [PositionEmbeddings] = new long[] { c.MaxPositions, c.HiddenSize },
            [TokenTypeEmbeddings] = new long[] { c.TypeVocabSize, c.HiddenSize },
        };
        foreach (var ln in LayerNorms(c))
        {
            shapes[ln + ".weight"] = new long[] { c.HiddenSize };
            shapes[ln + ".bias"] = new long[] { c.HiddenSize };
        }
        for (int i = 0; i < c.NumLayers; i++)
        {
            foreach (var (prefix, o, n) in Linears(i, c))
            {
                shapes[prefix + ".weight"] = new[] { o, n };
                shapes[prefix + ".bias"] = new[] { o };
            }
        }
        return shapes;
    }
}

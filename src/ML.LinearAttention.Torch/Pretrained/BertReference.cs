using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// A plain TorchSharp BERT forward straight from a <see cref="BertCheckpoint"/> (softmax attention, post-norm residual
/// blocks, the checkpoint's activation), written to mirror Hugging Face's BertModel line by line. It is the reference
/// that proves the weight mapping (the tests match it against ONNX Runtime) and that an encoder built from the same
/// checkpoint can be compared with. Inference only: weights are constants, not parameters.
/// </summary>
internal sealed class BertReference : IDisposable
{
    private readonly BertConfig _c;
    private readonly Dictionary<string, Tensor> _w;

    public BertReference(BertCheckpoint checkpoint, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        _c = checkpoint.Config;
        _w = checkpoint.Weights.Keys.ToDictionary(k => k, k => checkpoint.ToTensor(k, device));
    }

    /// <summary>Last hidden states [B, T, C] for token ids [B, T] (int64), an attention mask [B, T] (1/true = real token) and optional token types [B, T].</summary>
    public Tensor Forward(Tensor inputIds, Tensor attentionMask, Tensor? tokenTypeIds = null)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"inputIds must be [B, T]; got [{string.Join(", ", inputIds.shape)}].", nameof(inputIds));
        if (!attentionMask.shape.SequenceEqual(inputIds.shape)) throw new ArgumentException($"attentionMask [{string.Join(", ", attentionMask.shape)}] must have the shape of inputIds [{string.Join(", ", inputIds.shape)}].", nameof(attentionMask));
        long b = inputIds.shape[0], t = inputIds.shape[1];
        if (t > _c.MaxPositions) throw new ArgumentException($"Sequences of {t} tokens exceed the model's {_c.MaxPositions} positions; truncate them.", nameof(inputIds));

        using var scope = NewDisposeScope();
        var ids = inputIds.to(ScalarType.Int64).to(_w[BertNames.WordEmbeddings].device);
        var types = tokenTypeIds?.to(ScalarType.Int64).to(ids.device) ?? zeros_like(ids);
        var positions = arange(t, dtype: ScalarType.Int64, device: ids.device);
        var x = Embed(BertNames.WordEmbeddings, ids)
              + Embed(BertNames.TokenTypeEmbeddings, types)
              + _w[BertNames.PositionEmbeddings].index_select(0, positions).unsqueeze(0);
        x = LayerNorm(BertNames.EmbeddingsLayerNorm, x);

        // Padded keys get a large negative score (Hugging Face adds finfo.min; any value whose exp underflows is the same).
        var keep = attentionMask.to(ids.device).ne(0);
        var bias = zeros(b, 1, 1, t, device: ids.device).masked_fill(keep.logical_not().view(b, 1, 1, t), -1e9f);

        long h = _c.NumHeads, d = _c.HeadDim, c = _c.HiddenSize;
        double scale = 1.0 / Math.Sqrt(d);
        for (int i = 0; i < _c.NumLayers; i++)
        {
            var q = Linear(BertNames.Query(i), x).view(b, t, h, d).transpose(1, 2);
            var k = Linear(BertNames.Key(i), x).view(b, t, h, d).transpose(1, 2);
            var v = Linear(BertNames.Value(i), x).view(b, t, h, d).transpose(1, 2);
            var probs = F.softmax(q.matmul(k.transpose(-2, -1)) * scale + bias, -1);
            var context = probs.matmul(v).transpose(1, 2).reshape(b, t, c);
            x = LayerNorm(BertNames.AttentionLayerNorm(i), Linear(BertNames.AttentionOutput(i), context) + x);
            var ff = Activation(Linear(BertNames.Intermediate(i), x));
            x = LayerNorm(BertNames.OutputLayerNorm(i), Linear(BertNames.Output(i), ff) + x);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Mean of hidden states [B, T, C] over real tokens (mask [B, T]) → [B, C], as sentence-transformers pools.</summary>
    public static Tensor MeanPool(Tensor hidden, Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        var m = attentionMask.to(hidden.device).ne(0).to(hidden.dtype).unsqueeze(-1);
        return ((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)).MoveToOuterDisposeScope();
    }

    private Tensor Embed(string table, Tensor ids)
    {
        var w = _w[table];
        long rows = w.shape[0];
        if (ids.numel() > 0 && (ids.min().item<long>() < 0 || ids.max().item<long>() >= rows))
            throw new ArgumentException($"Token ids must lie in [0, {rows}) for '{table}'; got ids in [{ids.min().item<long>()}, {ids.max().item<long>()}].");
        return w.index_select(0, ids.reshape(-1)).view(ids.shape[0], ids.shape[1], -1);
    }

    private Tensor Linear(string prefix, Tensor x) => F.linear(x, _w[prefix + ".weight"], _w[prefix + ".bias"]);

    private Tensor LayerNorm(string prefix, Tensor x) =>
        F.layer_norm(x, new long[] { _c.HiddenSize }, _w[prefix + ".weight"], _w[prefix + ".bias"], _c.LayerNormEps);

    private Tensor Activation(Tensor x) => _c.Activation switch
    {
        "gelu" => F.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" => F.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        "relu" => F.relu(x),
        _ => throw new NotSupportedException($"Activation '{_c.Activation}' is not supported."),
    };

    public void Dispose()
    {
        foreach (var w in _w.Values) w.Dispose();
        _w.Clear();
    }
}

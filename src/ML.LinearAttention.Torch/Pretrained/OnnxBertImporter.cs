using System.Globalization;
using Microsoft.ML.LinearAttention.Pretrained.Onnx;

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// Maps a BERT ONNX graph (as PyTorch's exporter writes it) onto Hugging Face names. Embeddings, biases and LayerNorm
/// parameters are named initializers; each linear weight is an unnamed initializer B of a MatMul(x, B) whose output the
/// Add next to it sums with the named bias, so it is found by walking from the bias back to that MatMul. MatMul stores
/// [in, out]: it is transposed to PyTorch's [out, in]. Gemm nodes (transB) and named weights are handled too.
/// </summary>
internal static class OnnxBertImporter
{
    public static BertCheckpoint Import(byte[] model, IReadOnlyList<string> vocabulary, int? numHeads, string source)
    {
        var g = OnnxGraph.Parse(model);
        var weights = new List<WeightTensor>();

        WeightTensor Named(string name)
        {
            var t = g.Initializers.GetValueOrDefault(name)
                ?? throw new InvalidDataException($"{source}: the ONNX graph has no initializer '{name}'. Is it a BERT model exported from PyTorch (Hugging Face parameter names)?");
            return new WeightTensor(name, t.Dims.ToArray(), t.ToFloats());
        }

        var word = Named(BertNames.WordEmbeddings);
        var position = Named(BertNames.PositionEmbeddings);
        var tokenType = Named(BertNames.TokenTypeEmbeddings);
        weights.AddRange(new[] { word, position, tokenType });

        int layers = 0;
        while (g.Initializers.ContainsKey(BertNames.Query(layers) + ".bias")) layers++;
        if (layers == 0)
            throw new InvalidDataException($"{source}: no encoder layer found (no initializer '{BertNames.Query(0)}.bias').");
        int hidden = (int)word.Shape[1];
        var intermediate = Named(BertNames.Intermediate(0) + ".bias");

        var config = new BertConfig
        {
            VocabSize = (int)word.Shape[0],
            HiddenSize = hidden,
            NumLayers = layers,
            NumHeads = numHeads ?? ReadHeads(g, hidden) ?? throw new InvalidDataException(
                $"{source}: the number of attention heads could not be read from the graph's attention reshapes; pass numHeads."),
            IntermediateSize = (int)intermediate.Shape[0],
            MaxPositions = (int)position.Shape[0],
            TypeVocabSize = (int)tokenType.Shape[0],
            LayerNormEps = ReadLayerNormEps(g) ?? 1e-12,
            Activation = ReadActivation(g),
        };

        foreach (var ln in BertNames.LayerNorms(config))
        {
            weights.Add(Named(ln + ".weight"));
            weights.Add(Named(ln + ".bias"));
        }
        for (int i = 0; i < layers; i++)
        {
            foreach (var (prefix, _, _) in BertNames.Linears(i, config))
                weights.AddRange(Linear(g, prefix, source));
        }
        if (g.Initializers.ContainsKey(BertNames.PoolerDense + ".bias"))
            weights.AddRange(Linear(g, BertNames.PoolerDense, source));

        return new BertCheckpoint(config, weights, vocabulary, source);
    }

    /// <summary>The weight ([out, in]) and bias of one linear layer.</summary>
    private static IEnumerable<WeightTensor> Linear(OnnxGraph g, string prefix, string source)
    {
        string biasName = prefix + ".bias", weightName = prefix + ".weight";
        var biasT = g.Initializers.GetValueOrDefault(biasName)
            ?? throw new InvalidDataException($"{source}: the ONNX graph has no initializer '{biasName}'.");
        var bias = new WeightTensor(biasName, biasT.Dims.ToArray(), biasT.ToFloats());

        WeightTensor? weight = null;
        // A named weight (some exporters keep the name): orientation from the node that consumes it.
        if (g.Initializers.TryGetValue(weightName, out var named))
        {
            var w = new WeightTensor(weightName, named.Dims.ToArray(), named.ToFloats());
            var user = g.Consumers(weightName).FirstOrDefault();
            bool outIn = user is { OpType: "Gemm" } && user.Inputs.Count > 1 && user.Inputs[1] == weightName && user.Int("transB") == 1;
            weight = outIn ? w : w.Transposed();
        }
        else
        {
            foreach (var node in g.Consumers(biasName))
            {
                if (node.OpType == "Gemm" && node.Inputs.Count > 2 && node.Inputs[2] == biasName && g.Constant(node.Inputs[1]) is { } b)
                {
                    var w = new WeightTensor(weightName, b.Dims.ToArray(), b.ToFloats());
                    weight = node.Int("transB") == 1 ? w : w.Transposed();
                    break;
                }
                if (node.OpType != "Add") continue;
                foreach (var input in node.Inputs.Where(i => i != biasName))
                {
                    if (g.Producer(input) is { OpType: "MatMul" } mm && mm.Inputs.Count == 2 && g.Constant(mm.Inputs[1]) is { } m)
                    {
                        weight = new WeightTensor(weightName, m.Dims.ToArray(), m.ToFloats()).Transposed();
                        break;
                    }
                }
                if (weight is not null) break;
            }
        }
        if (weight is null)
            throw new InvalidDataException($"{source}: no weight matrix found for '{weightName}': expected an Add that sums '{biasName}' with the output of a MatMul by a constant matrix (or a Gemm with that bias). The graph may have been optimised (fused) by ONNX Runtime; import the unoptimised export.");
        if (weight.Shape.Length != 2 || weight.Shape[0] != bias.Shape[0])
            throw new InvalidDataException($"{source}: the matrix found for '{weightName}' has shape {weight.ShapeText} (as [out, in]), which does not match its bias {bias.ShapeText}.");
        return new[] { weight, bias };
    }

    /// <summary>Heads from the Reshape of the first layer's query/key/value projection to [B, T, heads, headDim].</summary>
    private static int? ReadHeads(OnnxGraph g, int hidden)
    {
        foreach (var proj in new[] { BertNames.Query(0), BertNames.Key(0), BertNames.Value(0) })
        {
            foreach (var add in g.Consumers(proj + ".bias").Where(n => n.OpType == "Add"))
            {
                foreach (var reshape in g.Consumers(add.Outputs[0]).Where(n => n.OpType == "Reshape" && n.Inputs.Count > 1))
                {
                    var shape = ConstantShape(g, reshape.Inputs[1]);
                    if (shape is { Length: >= 2 } && shape[^1] > 0 && shape[^2] > 0 && shape[^1] * shape[^2] == hidden)
                        return (int)shape[^2];
                }
            }
        }
        return null;
    }

    /// <summary>A shape input as values: a constant, or a Concat of pieces where unknown pieces read as -1.</summary>
    private static long[]? ConstantShape(OnnxGraph g, string tensor)
    {
        if (g.Constant(tensor) is { } c) return c.ToInt64s();
        if (g.Producer(tensor) is not { OpType: "Concat" } concat) return null;
        var parts = new List<long>();
        foreach (var input in concat.Inputs)
        {
            if (g.Constant(input) is { } piece) parts.AddRange(piece.ToInt64s());
            else parts.Add(-1);   // a runtime dimension (batch or length), one value per Unsqueeze'd scalar
        }
        return parts.ToArray();
    }

    /// <summary>LayerNorm epsilon: the scalar added to the variance before Sqrt, or a LayerNormalization node's attribute.</summary>
    private static double? ReadLayerNormEps(OnnxGraph g)
    {
        foreach (var node in g.Nodes)
        {
            if (node.OpType == "LayerNormalization") return node.Float("epsilon") is { } e ? Shortest(e) : 1e-5;
            if (node.OpType != "Sqrt" || g.Producer(node.Inputs[0]) is not { OpType: "Add" } add) continue;
            foreach (var input in add.Inputs)
            {
                if (g.Constant(input) is { } c && c.ElementCount == 1) return Shortest(c.ToFloats()[0]);
            }
        }
        return null;
    }

    /// <summary>A float32 as the shortest decimal that rounds to it, so 1e-12 reads as 1e-12 rather than 9.99999996e-13.</summary>
    private static double Shortest(float f) => double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>"gelu" when the graph uses the exact (erf) GELU, "gelu_new" for the tanh approximation, "relu" for Relu.</summary>
    private static string ReadActivation(OnnxGraph g)
    {
        var ops = g.Nodes.Select(n => n.OpType).ToHashSet();
        var gelu = g.Nodes.FirstOrDefault(n => n.OpType == "Gelu");
        if (gelu is not null) return gelu.Attributes.TryGetValue("approximate", out var a) && a.S == "tanh" ? "gelu_new" : "gelu";
        if (ops.Contains("Erf")) return "gelu";
        if (ops.Contains("Relu")) return "relu";
        // The tanh approximation exports as Pow(x, 3) + Tanh; the pooler's single Tanh alone does not count.
        if (ops.Contains("Pow") && g.Nodes.Count(n => n.OpType == "Tanh") > 1) return "gelu_new";
        throw new InvalidDataException("The ONNX graph has no recognisable feed-forward activation (Erf/Gelu, Relu or the tanh GELU).");
    }
}

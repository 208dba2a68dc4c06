using System.Text;
using Microsoft.ML.LinearAttention.Pretrained;

namespace Microsoft.ML.LinearAttention.Tests.Pretrained;

/// <summary>
/// Writes a small ONNX ModelProto in protobuf wire format, shaped like PyTorch's BERT export: named embeddings, biases
/// and LayerNorms; each linear weight an unnamed [in, out] initializer of a MatMul whose output an Add sums with the bias.
/// </summary>
internal sealed class OnnxWriter
{
    private readonly MemoryStream _graph = new();
    private int _next;

    public string Fresh() => $"t{_next++}";

    public void Initializer(string name, long[] dims, float[] data, bool rawData = true)
    {
        var t = new MemoryStream();
        foreach (var d in dims) { Key(t, 1, 0); Varint(t, (ulong)d); }
        Key(t, 2, 0); Varint(t, 1);                       // FLOAT
        if (rawData) Bytes(t, 9, data.SelectMany(BitConverter.GetBytes).ToArray());
        else Bytes(t, 4, data.SelectMany(BitConverter.GetBytes).ToArray());   // packed float_data
        Bytes(t, 8, Encoding.UTF8.GetBytes(name));
        Bytes(_graph, 5, t.ToArray());
    }

    public void Int64Initializer(string name, long[] values)
    {
        var t = new MemoryStream();
        Key(t, 1, 0); Varint(t, (ulong)values.Length);
        Key(t, 2, 0); Varint(t, 7);                        // INT64
        Bytes(t, 9, values.SelectMany(BitConverter.GetBytes).ToArray());
        Bytes(t, 8, Encoding.UTF8.GetBytes(name));
        Bytes(_graph, 5, t.ToArray());
    }

    public void Node(string op, string[] inputs, params string[] outputs)
    {
        var n = new MemoryStream();
        foreach (var i in inputs) Bytes(n, 1, Encoding.UTF8.GetBytes(i));
        foreach (var o in outputs) Bytes(n, 2, Encoding.UTF8.GetBytes(o));
        Bytes(n, 3, Encoding.UTF8.GetBytes(op + "_" + _next++));
        Bytes(n, 4, Encoding.UTF8.GetBytes(op));
        Bytes(_graph, 1, n.ToArray());
    }

    public byte[] ToModel()
    {
        var m = new MemoryStream();
        Key(m, 1, 0); Varint(m, 7);                         // ir_version
        Bytes(m, 2, Encoding.UTF8.GetBytes("pytorch"));
        Bytes(m, 7, _graph.ToArray());
        return m.ToArray();
    }

    /// <summary>A tiny BERT graph. <paramref name="skip"/> leaves out the MatMul of one linear layer (by HF prefix).</summary>
    public static byte[] TinyBertModel(IReadOnlyDictionary<string, WeightTensor> w, BertConfig c, string? skip = null)
    {
        var g = new OnnxWriter();
        foreach (var name in new[] { BertNames.WordEmbeddings, BertNames.PositionEmbeddings, BertNames.TokenTypeEmbeddings })
            g.Initializer(name, w[name].Shape, w[name].Data);
        foreach (var ln in BertNames.LayerNorms(c))
        {
            g.Initializer(ln + ".weight", w[ln + ".weight"].Shape, w[ln + ".weight"].Data, rawData: false);
            g.Initializer(ln + ".bias", w[ln + ".bias"].Shape, w[ln + ".bias"].Data);
        }
        string x = "hidden";
        // LayerNorm epsilon as the exporter writes it: Add(variance, eps) → Sqrt.
        g.Initializer("eps", Array.Empty<long>(), new[] { 1e-12f });
        g.Node("Add", new[] { "variance", "eps" }, "variance_eps");
        g.Node("Sqrt", new[] { "variance_eps" }, "std");
        g.Node("Erf", new[] { "ff" }, "erf");
        for (int i = 0; i < c.NumLayers; i++)
        {
            foreach (var (prefix, _, _) in BertNames.Linears(i, c))
            {
                var weight = w[prefix + ".weight"];
                string wname = g.Fresh(), mm = g.Fresh(), output = g.Fresh();
                g.Initializer(wname, new[] { weight.Shape[1], weight.Shape[0] }, weight.Transposed().Data);   // [in, out]
                g.Initializer(prefix + ".bias", w[prefix + ".bias"].Shape, w[prefix + ".bias"].Data);
                if (prefix != skip) g.Node("MatMul", new[] { x, wname }, mm);
                g.Node("Add", new[] { prefix + ".bias", mm }, output);
                if (prefix == BertNames.Query(i))
                {
                    string shape = g.Fresh();
                    g.Int64Initializer(shape, new long[] { 0, 0, c.NumHeads, c.HeadDim });
                    g.Node("Reshape", new[] { output, shape }, g.Fresh());
                }
            }
        }
        return g.ToModel();
    }

    private static void Key(Stream s, int field, int wire) => Varint(s, (ulong)(field << 3 | wire));

    private static void Varint(Stream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }

    private static void Bytes(Stream s, int field, byte[] bytes)
    {
        Key(s, field, 2);
        Varint(s, (ulong)bytes.Length);
        s.Write(bytes);
    }
}

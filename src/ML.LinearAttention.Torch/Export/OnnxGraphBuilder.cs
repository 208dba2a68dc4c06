using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>ONNX tensor element types the exporter writes (TensorProto.DataType values).</summary>
public enum OnnxElementType
{
    Float = 1,
    Int64 = 7,
    Bool = 9,
}

/// <summary>
/// Builds one ONNX graph: inputs and outputs with symbolic dimensions, initializers copied from TorchSharp tensors,
/// constants and nodes with unique names. <see cref="Write"/> serializes it as a ModelProto (IR version 8) through
/// <see cref="ProtoWriter"/>. Node helpers return the name of their output, so a forward pass reads like the TorchSharp
/// code it mirrors.
/// </summary>
public sealed class OnnxGraphBuilder
{
    /// <summary>The default opset (ai.onnx): 18 has LayerNormalization and takes reduction axes as inputs.</summary>
    public const int DefaultOpset = 18;

    private readonly List<ProtoWriter> _nodes = new();
    private readonly List<ProtoWriter> _initializers = new();
    private readonly List<ProtoWriter> _inputs = new();
    private readonly List<ProtoWriter> _outputs = new();
    private readonly Dictionary<string, int> _names = new();
    private readonly Dictionary<string, string> _constants = new();

    /// <summary>Number of nodes so far.</summary>
    public int NodeCount => _nodes.Count;

    /// <summary>Number of weight and constant values stored in the graph.</summary>
    public long InitializerValues { get; private set; }

    /// <summary>A name not used before, from <paramref name="hint"/>.</summary>
    public string Fresh(string hint)
    {
        int n = _names.TryGetValue(hint, out var c) ? c : 0;
        _names[hint] = n + 1;
        return n == 0 ? hint : $"{hint}_{n}";
    }

    /// <summary>Declares a graph input; a dimension is a <see cref="long"/> (fixed) or a <see cref="string"/> (symbolic).</summary>
    public string Input(string name, OnnxElementType type, params object[] dims)
    {
        _names[name] = 1;
        _inputs.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as a graph output named <paramref name="name"/> (an Identity node renames it).</summary>
    public void Output(string value, string name, OnnxElementType type, params object[] dims)
    {
        _names[name] = 1;
        NodeTo("Identity", new[] { value }, new[] { name });
        _outputs.Add(ValueInfo(name, type, dims));
    }

    /// <summary>A float32 (or int64) initializer holding a copy of <paramref name="tensor"/>.</summary>
    public string Initializer(string hint, Tensor tensor)
    {
        using var cpu = tensor.detach().cpu();
        if (cpu.dtype == ScalarType.Int64)
            return AddInitializer(Fresh(hint), OnnxElementType.Int64, cpu.shape, MemoryMarshal.AsBytes(cpu.contiguous().data<long>().ToArray().AsSpan()).ToArray());
        using var f = cpu.to(ScalarType.Float32).contiguous();
        return AddInitializer(Fresh(hint), OnnxElementType.Float, f.shape, MemoryMarshal.AsBytes(f.data<float>().ToArray().AsSpan()).ToArray());
    }

    /// <summary>A float32 constant of the given shape (a scalar when <paramref name="shape"/> is empty), shared by equal values.</summary>
    public string Const(float[] values, params long[] shape)
    {
        var key = "f:" + string.Join(",", shape) + ":" + string.Join(",", values.Select(v => BitConverter.SingleToInt32Bits(v)));
        if (_constants.TryGetValue(key, out var name)) return name;
        name = AddInitializer(Fresh("const"), OnnxElementType.Float, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        _constants[key] = name;
        return name;
    }

    /// <summary>A float32 scalar constant.</summary>
    public string Scalar(double value) => Const(new[] { (float)value });

    /// <summary>An int64 1-D constant (shapes, axes, indices), shared by equal values.</summary>
    public string Ints(params long[] values)
    {
        var key = "i:" + string.Join(",", values);
        if (_constants.TryGetValue(key, out var name)) return name;
        name = AddInitializer(Fresh("ints"), OnnxElementType.Int64, new long[] { values.Length }, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        _constants[key] = name;
        return name;
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Node(string op, string[] inputs, params (string Name, object Value)[] attributes)
        => NodeTo(op, inputs, new[] { Fresh(op.ToLowerInvariant()) }, attributes)[0];

    /// <summary>Adds a node with the given outputs.</summary>
    public string[] NodeTo(string op, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
    {
        var n = new ProtoWriter();
        foreach (var i in inputs) n.String(1, i);
        foreach (var o in outputs) n.String(2, o);
        n.String(3, Fresh("n_" + op));
        n.String(4, op);
        foreach (var (name, value) in attributes) n.Message(5, Attribute(name, value));
        _nodes.Add(n);
        return outputs;
    }

    /// <summary>Serializes the graph as an ONNX model.</summary>
    public void Write(Stream stream, string graphName, int opset = DefaultOpset, string? docString = null)
    {
        var graph = new ProtoWriter();
        foreach (var n in _nodes) graph.Message(1, n);
        graph.String(2, graphName);
        foreach (var i in _initializers) graph.Message(5, i);
        if (docString is not null) graph.String(10, docString);
        foreach (var i in _inputs) graph.Message(11, i);
        foreach (var o in _outputs) graph.Message(12, o);

        var model = new ProtoWriter();
        model.Varint(1, 8);                                    // ir_version 8 (ONNX 1.13+)
        model.String(2, "ML.LinearAttention");                 // producer_name
        model.String(3, typeof(OnnxGraphBuilder).Assembly.GetName().Version?.ToString() ?? "0");
        model.Message(7, graph);
        var opsetId = new ProtoWriter();
        opsetId.String(1, "");
        opsetId.Varint(2, opset);
        model.Message(8, opsetId);
        model.WriteTo(stream);
    }

    private string AddInitializer(string name, OnnxElementType type, long[] shape, byte[] raw)
    {
        var t = new ProtoWriter();
        t.PackedInt64(1, shape);
        t.Varint(2, (int)type);
        t.String(8, name);
        t.Bytes(9, raw);
        _initializers.Add(t);
        InitializerValues += shape.Aggregate(1L, (a, b) => a * b);
        return name;
    }

    private static ProtoWriter ValueInfo(string name, OnnxElementType type, object[] dims)
    {
        var shape = new ProtoWriter();
        foreach (var d in dims)
        {
            var dim = new ProtoWriter();
            if (d is string s) dim.String(2, s);
            else dim.Varint(1, Convert.ToInt64(d));
            shape.Message(1, dim);
        }
        var tensorType = new ProtoWriter();
        tensorType.Varint(1, (int)type);
        tensorType.Message(2, shape);
        var typeProto = new ProtoWriter();
        typeProto.Message(1, tensorType);
        var info = new ProtoWriter();
        info.String(1, name);
        info.Message(2, typeProto);
        return info;
    }

    private static ProtoWriter Attribute(string name, object value)
    {
        var a = new ProtoWriter();
        a.String(1, name);
        switch (value)
        {
            case float f: a.Float(2, f); a.Varint(20, 1); break;
            case double d: a.Float(2, (float)d); a.Varint(20, 1); break;
            case int i: a.Varint(3, i); a.Varint(20, 2); break;
            case long l: a.Varint(3, l); a.Varint(20, 2); break;
            case string s: a.String(4, s); a.Varint(20, 3); break;
            case long[] ls: a.PackedInt64(8, ls); a.Varint(20, 7); break;
            case int[] ins: a.PackedInt64(8, ins.Select(x => (long)x)); a.Varint(20, 7); break;
            default: throw new ArgumentException($"Attribute '{name}' has an unsupported type {value.GetType().Name}.");
        }
        return a;
    }
}

namespace Microsoft.ML.LinearAttention.Pretrained.Onnx;

/// <summary>An ONNX TensorProto: dims, element type and data (raw bytes as a slice of the model buffer, or typed lists).</summary>
internal sealed class OnnxTensor
{
    // onnx.TensorProto.DataType values used here.
    public const int Float = 1, Int32 = 6, Int64 = 7, Float16 = 10, Double = 11, BFloat16 = 16;

    public string Name { get; set; } = "";
    public List<long> Dims { get; } = new();
    public int DataType { get; set; }
    public byte[]? RawBuffer { get; set; }
    public int RawStart { get; set; }
    public int RawLength { get; set; }
    public List<float> FloatData { get; } = new();
    public List<long> Int32Data { get; } = new();   // int32_data also carries float16/bfloat16 bit patterns
    public List<long> Int64Data { get; } = new();
    public List<double> DoubleData { get; } = new();
    public bool External { get; set; }

    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    public static OnnxTensor Parse(ProtoReader r)
    {
        var t = new OnnxTensor();
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1: r.ReadInt64s(wire, t.Dims); break;
                case 2: t.DataType = (int)r.ReadInt64(); break;
                case 4: r.ReadFloats(wire, t.FloatData); break;
                case 5: r.ReadInt64s(wire, t.Int32Data); break;
                case 7: r.ReadInt64s(wire, t.Int64Data); break;
                case 8: t.Name = r.ReadString(); break;
                case 9: (t.RawStart, t.RawLength) = r.ReadSlice(); t.RawBuffer = r.Buffer; break;
                case 10: r.ReadDoubles(wire, t.DoubleData); break;
                case 14: t.External = r.ReadInt64() == 1; break;   // data_location: 1 = EXTERNAL
                default: r.Skip(wire); break;
            }
        }
        return t;
    }

    /// <summary>The values as float32 (float, float16, bfloat16 and double are accepted).</summary>
    public float[] ToFloats()
    {
        CheckInline();
        long n = ElementCount;
        float[] result = DataType switch
        {
            Float when RawBuffer is not null => FloatConversions.FromF32(RawSpan()),
            Float => FloatData.ToArray(),
            Float16 when RawBuffer is not null => FloatConversions.FromF16(RawSpan()),
            Float16 => Int32Data.Select(b => (float)BitConverter.UInt16BitsToHalf((ushort)b)).ToArray(),
            BFloat16 when RawBuffer is not null => FloatConversions.FromBF16(RawSpan()),
            BFloat16 => Int32Data.Select(b => BitConverter.Int32BitsToSingle((int)(b << 16))).ToArray(),
            Double when RawBuffer is not null => FloatConversions.FromF64(RawSpan()),
            Double => DoubleData.Select(d => (float)d).ToArray(),
            _ => throw new NotSupportedException($"ONNX initializer '{Name}' has element type {DataType}; only float32, float16, bfloat16 and double weights can be imported."),
        };
        if (result.LongLength != n)
            throw new InvalidDataException($"ONNX initializer '{Name}' holds {result.LongLength} values but its dims [{string.Join(", ", Dims)}] need {n}.");
        return result;
    }

    /// <summary>The values as int64 (int64 and int32 tensors; used for shape constants).</summary>
    public long[] ToInt64s()
    {
        CheckInline();
        return DataType switch
        {
            Int64 when RawBuffer is not null => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(RawSpan()).ToArray(),
            Int64 => Int64Data.ToArray(),
            Int32 when RawBuffer is not null => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(RawSpan()).ToArray().Select(v => (long)v).ToArray(),
            Int32 => Int32Data.ToArray(),
            _ => ToFloats().Select(f => (long)f).ToArray(),
        };
    }

    private ReadOnlySpan<byte> RawSpan() => RawBuffer.AsSpan(RawStart, RawLength);

    private void CheckInline()
    {
        if (External)
            throw new NotSupportedException($"ONNX initializer '{Name}' is stored in an external data file; save the model with its weights inside the .onnx file (onnx.save(..., save_as_external_data=False)).");
    }
}

/// <summary>An ONNX NodeProto with the attributes the importer reads (float, int and tensor values).</summary>
internal sealed record OnnxNode(string OpType, string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs,
    IReadOnlyDictionary<string, OnnxAttribute> Attributes)
{
    public static OnnxNode Parse(ProtoReader r)
    {
        string op = "", name = "";
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attrs = new Dictionary<string, OnnxAttribute>();
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1: inputs.Add(r.ReadString()); break;
                case 2: outputs.Add(r.ReadString()); break;
                case 3: name = r.ReadString(); break;
                case 4: op = r.ReadString(); break;
                case 5: var a = OnnxAttribute.Parse(r.ReadMessage()); attrs[a.Name] = a; break;
                default: r.Skip(wire); break;
            }
        }
        return new OnnxNode(op, name, inputs, outputs, attrs);
    }

    public long? Int(string attribute) => Attributes.TryGetValue(attribute, out var a) ? a.I : null;
    public float? Float(string attribute) => Attributes.TryGetValue(attribute, out var a) ? a.F : null;
    public IReadOnlyList<long>? Ints(string attribute) => Attributes.TryGetValue(attribute, out var a) && a.Ints.Count > 0 ? a.Ints : null;
}

/// <summary>An ONNX AttributeProto (name, f, i, s, t, ints).</summary>
internal sealed class OnnxAttribute
{
    public string Name { get; private set; } = "";
    public float? F { get; private set; }
    public long? I { get; private set; }
    public string? S { get; private set; }
    public OnnxTensor? T { get; private set; }
    /// <summary>Repeated int64 values (kernel_shape, strides, pads, ...); empty when absent.</summary>
    public List<long> Ints { get; } = new();

    public static OnnxAttribute Parse(ProtoReader r)
    {
        var a = new OnnxAttribute();
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1: a.Name = r.ReadString(); break;
                case 2: a.F = r.ReadFloat(); break;
                case 3: a.I = r.ReadInt64(); break;
                case 4: a.S = r.ReadString(); break;
                case 5: a.T = OnnxTensor.Parse(r.ReadMessage()); break;
                case 8: r.ReadInt64s(wire, a.Ints); break;
                default: r.Skip(wire); break;
            }
        }
        return a;
    }
}

/// <summary>The graph of an ONNX ModelProto: nodes in file order, named initializers, and lookups by tensor name.</summary>
internal sealed class OnnxGraph
{
    private readonly Dictionary<string, OnnxNode> _producers = new();
    private readonly Dictionary<string, List<OnnxNode>> _consumers = new();

    public List<OnnxNode> Nodes { get; } = new();
    public Dictionary<string, OnnxTensor> Initializers { get; } = new();

    /// <summary>Parses a serialized ModelProto (field 7 = graph; graph fields 1 = node, 5 = initializer).</summary>
    public static OnnxGraph Parse(byte[] model)
    {
        var r = new ProtoReader(model);
        ProtoReader? graph = null;
        while (r.Next(out int field, out int wire))
        {
            if (field == 7 && wire == 2) graph = r.ReadMessage();
            else r.Skip(wire);
        }
        if (graph is null) throw new InvalidDataException("The data is not an ONNX model: it has no graph (ModelProto field 7).");

        var g = new OnnxGraph();
        var gr = graph.Value;
        while (gr.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1: g.Nodes.Add(OnnxNode.Parse(gr.ReadMessage())); break;
                case 5: var t = OnnxTensor.Parse(gr.ReadMessage()); g.Initializers[t.Name] = t; break;
                default: gr.Skip(wire); break;
            }
        }
        foreach (var node in g.Nodes)
        {
            foreach (var o in node.Outputs) g._producers[o] = node;
            foreach (var i in node.Inputs)
            {
                if (!g._consumers.TryGetValue(i, out var list)) g._consumers[i] = list = new List<OnnxNode>();
                list.Add(node);
            }
        }
        return g;
    }

    public OnnxNode? Producer(string tensor) => _producers.GetValueOrDefault(tensor);

    public IReadOnlyList<OnnxNode> Consumers(string tensor) =>
        _consumers.TryGetValue(tensor, out var list) ? list : Array.Empty<OnnxNode>();

    /// <summary>A constant tensor by name: an initializer or the value of a Constant node; null when computed at run time.</summary>
    public OnnxTensor? Constant(string tensor)
    {
        if (Initializers.TryGetValue(tensor, out var init)) return init;
        var p = Producer(tensor);
        if (p is { OpType: "Constant" } && p.Attributes.TryGetValue("value", out var a) && a.T is not null) return a.T;
        return null;
    }
}

namespace Microsoft.ML.LinearAttention.Pretrained;

/// <summary>
/// One named weight as a row-major float32 array and its shape. Linear weights are [out, in] (PyTorch's layout),
/// whatever the source stored.
/// </summary>
public sealed class WeightTensor
{
    public WeightTensor(string name, long[] shape, float[] data)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        long n = shape.Aggregate(1L, (a, d) => d < 0 ? throw new ArgumentException($"Weight '{name}' has a negative dimension in [{string.Join(", ", shape)}].") : a * d);
        if (n != data.LongLength)
            throw new ArgumentException($"Weight '{name}' has {data.LongLength} values but shape [{string.Join(", ", shape)}] needs {n}.");
        Name = name;
        Shape = shape;
        Data = data;
    }

    /// <summary>Hugging Face parameter name, e.g. <c>encoder.layer.0.attention.self.query.weight</c>.</summary>
    public string Name { get; }
    /// <summary>Dimensions, outermost first.</summary>
    public long[] Shape { get; }
    /// <summary>Values in row-major order.</summary>
    public float[] Data { get; }

    /// <summary>Shape as text, e.g. "[384, 1536]".</summary>
    public string ShapeText => $"[{string.Join(", ", Shape)}]";

    /// <summary>A copy with a 2-D matrix transposed ([rows, cols] → [cols, rows]).</summary>
    public WeightTensor Transposed(string? name = null)
    {
        if (Shape.Length != 2) throw new InvalidOperationException($"Weight '{Name}' of shape {ShapeText} is not a matrix and cannot be transposed.");
        int rows = checked((int)Shape[0]), cols = checked((int)Shape[1]);
        var t = new float[Data.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[(long)c * rows + r] = Data[(long)r * cols + c];
        return new WeightTensor(name ?? Name, new long[] { cols, rows }, t);
    }

    public override string ToString() => $"{Name} {ShapeText}";
}

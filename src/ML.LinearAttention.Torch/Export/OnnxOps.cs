namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// The ONNX forms of the TorchSharp operations the encoder uses, as helpers over <see cref="OnnxGraphBuilder"/>; each
/// mirrors the libtorch formula it replaces (RMSNorm in fp32 with the mean of squares, GELU in its erf or tanh form).
/// </summary>
public static class OnnxOps
{
    public static string Add(this OnnxGraphBuilder g, string a, string b) => g.Node("Add", new[] { a, b });
    public static string Sub(this OnnxGraphBuilder g, string a, string b) => g.Node("Sub", new[] { a, b });
    public static string Mul(this OnnxGraphBuilder g, string a, string b) => g.Node("Mul", new[] { a, b });
    public static string Div(this OnnxGraphBuilder g, string a, string b) => g.Node("Div", new[] { a, b });
    public static string MatMul(this OnnxGraphBuilder g, string a, string b) => g.Node("MatMul", new[] { a, b });
    public static string Neg(this OnnxGraphBuilder g, string x) => g.Node("Neg", new[] { x });
    public static string Relu(this OnnxGraphBuilder g, string x) => g.Node("Relu", new[] { x });
    public static string Max(this OnnxGraphBuilder g, string a, string b) => g.Node("Max", new[] { a, b });
    public static string Softmax(this OnnxGraphBuilder g, string x, int axis = -1) => g.Node("Softmax", new[] { x }, ("axis", axis));
    public static string Cast(this OnnxGraphBuilder g, string x, OnnxElementType to) => g.Node("Cast", new[] { x }, ("to", (int)to));
    public static string Concat(this OnnxGraphBuilder g, int axis, params string[] xs) => g.Node("Concat", xs, ("axis", axis));
    public static string Transpose(this OnnxGraphBuilder g, string x, params long[] perm) => g.Node("Transpose", new[] { x }, ("perm", perm));
    public static string Reshape(this OnnxGraphBuilder g, string x, params long[] shape) => g.Node("Reshape", new[] { x, g.Ints(shape) });
    public static string Unsqueeze(this OnnxGraphBuilder g, string x, params long[] axes) => g.Node("Unsqueeze", new[] { x, g.Ints(axes) });
    public static string Gather(this OnnxGraphBuilder g, string data, string indices, int axis = 0) => g.Node("Gather", new[] { data, indices }, ("axis", axis));
    public static string Where(this OnnxGraphBuilder g, string condition, string a, string b) => g.Node("Where", new[] { condition, a, b });

    public static string ReduceSum(this OnnxGraphBuilder g, string x, bool keepDims, params long[] axes)
        => g.Node("ReduceSum", new[] { x, g.Ints(axes) }, ("keepdims", keepDims ? 1 : 0));

    public static string ReduceMean(this OnnxGraphBuilder g, string x, bool keepDims, params long[] axes)
        => g.Node("ReduceMean", new[] { x, g.Ints(axes) }, ("keepdims", keepDims ? 1 : 0));

    /// <summary>x[..., start:end] along <paramref name="axis"/>.</summary>
    public static string Slice(this OnnxGraphBuilder g, string x, long start, long end, long axis)
        => g.Node("Slice", new[] { x, g.Ints(start), g.Ints(end), g.Ints(axis) });

    /// <summary>Dimension <paramref name="axis"/> of x as a 1-element int64 tensor.</summary>
    public static string Dim(this OnnxGraphBuilder g, string x, long axis)
        => g.Node("Shape", new[] { x }, ("start", axis), ("end", axis + 1));

    /// <summary>0, 1, …, n−1 (int64) for a 1-element int64 tensor n.</summary>
    public static string Range(this OnnxGraphBuilder g, string n)
    {
        var scalar = g.Node("Squeeze", new[] { n, g.Ints(0) });
        return g.Node("Range", new[] { g.IntScalar(0), scalar, g.IntScalar(1) });
    }

    /// <summary>An int64 scalar constant (Range's bounds).</summary>
    public static string IntScalar(this OnnxGraphBuilder g, long value)
        => g.Node("Squeeze", new[] { g.Ints(value), g.Ints(0) });

    /// <summary>x·Wᵀ + b with W [out, in] stored transposed (TorchSharp's nn.Linear).</summary>
    public static string Linear(this OnnxGraphBuilder g, string x, TorchSharp.torch.Tensor weight, TorchSharp.torch.Tensor? bias, string name)
    {
        using var wt = weight.detach().t().contiguous();
        var y = g.MatMul(x, g.Initializer(name + ".weight_t", wt));
        return bias is null ? y : g.Add(y, g.Initializer(name + ".bias", bias));
    }

    /// <summary>RmsNorm: x / sqrt(mean(x²) + eps) · w over the last axis (w null = no weight).</summary>
    public static string RmsNorm(this OnnxGraphBuilder g, string x, TorchSharp.torch.Tensor? weight, double eps, string name)
    {
        var meanSquare = g.ReduceMean(g.Mul(x, x), true, -1);
        var y = g.Div(x, g.Node("Sqrt", new[] { g.Add(meanSquare, g.Scalar(eps)) }));
        return weight is null ? y : g.Mul(y, g.Initializer(name + ".weight", weight));
    }

    /// <summary>LayerNorm over the last axis (opset 17's LayerNormalization).</summary>
    public static string LayerNorm(this OnnxGraphBuilder g, string x, TorchSharp.torch.Tensor weight, TorchSharp.torch.Tensor? bias, double eps, string name)
    {
        var inputs = bias is null
            ? new[] { x, g.Initializer(name + ".weight", weight) }
            : new[] { x, g.Initializer(name + ".weight", weight), g.Initializer(name + ".bias", bias) };
        return g.Node("LayerNormalization", inputs, ("axis", -1), ("epsilon", (float)eps));
    }

    /// <summary>GELU: exact 0.5·x·(1 + erf(x/√2)) (libtorch's default), or the tanh approximation.</summary>
    public static string Gelu(this OnnxGraphBuilder g, string x, bool tanh = false)
    {
        string inner;
        if (tanh)
        {
            var cube = g.Mul(g.Mul(x, x), x);
            var arg = g.Mul(g.Add(x, g.Mul(cube, g.Scalar(0.044715))), g.Scalar(Math.Sqrt(2 / Math.PI)));
            inner = g.Node("Tanh", new[] { arg });
        }
        else inner = g.Node("Erf", new[] { g.Mul(x, g.Scalar(1 / Math.Sqrt(2))) });
        return g.Mul(g.Mul(x, g.Scalar(0.5)), g.Add(inner, g.Scalar(1)));
    }

    /// <summary>[B, T, H·D] → [B, H, T, D].</summary>
    public static string SplitHeads(this OnnxGraphBuilder g, string x, int heads, int headDim)
        => g.Transpose(g.Reshape(x, 0, 0, heads, headDim), 0, 2, 1, 3);

    /// <summary>[B, H, T, D] → [B, T, H·D].</summary>
    public static string MergeHeads(this OnnxGraphBuilder g, string x, int modelDim)
        => g.Reshape(g.Transpose(x, 0, 2, 1, 3), 0, 0, modelDim);
}

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>The operation of one <see cref="ConvGraphOp"/>.</summary>
public enum ConvOpKind
{
    /// <summary>2D convolution with bias (an ONNX Conv, with the BatchNormalization after it folded in).</summary>
    Conv,
    /// <summary>Elementwise ReLU.</summary>
    Relu,
    /// <summary>Elementwise sum of two tensors (a residual connection).</summary>
    Add,
    /// <summary>2D max pooling.</summary>
    MaxPool,
}

/// <summary>
/// One node of a <see cref="ConvGraphSpec"/>. Pads are ONNX's [top, left, bottom, right]. Asymmetric pads are the
/// frozen trace of "same" padding at the export resolution (CNTK pads its stride-2 layers only at the top and left):
/// such a node gets <see cref="SamePadding"/> and recomputes its pads for the actual input size, so the residual
/// branches keep matching at any resolution.
/// </summary>
public sealed record ConvGraphOp
{
    public ConvOpKind Kind { get; init; }
    public string[] Inputs { get; init; } = Array.Empty<string>();
    public string Output { get; init; } = "";
    /// <summary>Index of the convolution module (Conv only).</summary>
    public int Module { get; init; } = -1;
    /// <summary>Conv weight shape [out, in / group, kh, kw] (Conv only).</summary>
    public long[]? WeightShape { get; init; }
    public long[] Kernel { get; init; } = { 1, 1 };
    public long[] Stride { get; init; } = { 1, 1 };
    public long[] Pads { get; init; } = { 0, 0, 0, 0 };
    public long[] Dilation { get; init; } = { 1, 1 };
    public int Group { get; init; } = 1;
    /// <summary>null: the explicit <see cref="Pads"/>; "lower"/"upper": "same" padding for the actual input size, the odd
    /// pixel before (lower) or after (upper), as ONNX's SAME_LOWER / SAME_UPPER.</summary>
    public string? SamePadding { get; init; }
}

/// <summary>
/// The structure of a pretrained convolutional stem (conv / relu / residual add / max pool nodes in execution order)
/// read from an ONNX graph and cut at one feature level. Stored as JSON in the saved model, so the stem is rebuilt
/// without the ONNX file; its weights travel in the model's state like every other weight.
/// </summary>
public sealed record ConvGraphSpec
{
    /// <summary>Where the weights came from (file name and level), for logs.</summary>
    public string Source { get; init; } = "";
    /// <summary>Name of the graph input (the image tensor [B, 3, H, W]).</summary>
    public string Input { get; init; } = "";
    /// <summary>Name of the tensor the stem returns (its feature map).</summary>
    public string Output { get; init; } = "";
    /// <summary>Channels of the feature map.</summary>
    public int OutputChannels { get; init; }
    /// <summary>Input pixels per feature-map cell along each side (32 for ResNet18's last level).</summary>
    public int TotalStride { get; init; }
    /// <summary>Nodes in execution order.</summary>
    public List<ConvGraphOp> Ops { get; init; } = new();
    /// <summary>Number of convolution modules.</summary>
    public int ConvCount => Ops.Count(o => o.Kind == ConvOpKind.Conv);

    /// <summary>Checks that every node reads tensors computed before it and that the output exists.</summary>
    public void Validate()
    {
        var known = new HashSet<string> { Input };
        foreach (var op in Ops)
        {
            foreach (var i in op.Inputs)
                if (!known.Contains(i)) throw new InvalidDataException($"The stem graph reads '{i}' before it is computed (node {op.Kind} → '{op.Output}').");
            if (op.Kind == ConvOpKind.Conv && (op.WeightShape is not { Length: 4 } || op.Module < 0))
                throw new InvalidDataException($"The stem's convolution '{op.Output}' has no weight shape.");
            known.Add(op.Output);
        }
        if (!known.Contains(Output)) throw new InvalidDataException($"The stem graph never computes its output '{Output}'.");
        if (OutputChannels <= 0 || TotalStride <= 0) throw new InvalidDataException("The stem graph has no output channels or stride.");
    }
}

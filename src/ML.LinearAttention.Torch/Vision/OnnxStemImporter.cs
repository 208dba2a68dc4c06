using Microsoft.ML.LinearAttention.Pretrained.Onnx;

namespace Microsoft.ML.LinearAttention.Vision;

/// <summary>A convolutional stem read from ONNX: its structure, its (BatchNorm-folded) weights and its input convention.</summary>
/// <param name="Spec">Structure, cut at the requested level.</param>
/// <param name="Convs">Weight [out, in/g, kh, kw] and bias [out] of each convolution, in module order.</param>
/// <param name="MeanImage">Per-pixel mean [3, h, w] subtracted from the input (in the stem's channel order), or null.</param>
/// <param name="MeanHeight">h of <paramref name="MeanImage"/>.</param>
/// <param name="MeanWidth">w of <paramref name="MeanImage"/>.</param>
/// <param name="Bgr">True when the stem expects blue, green, red channel order.</param>
/// <param name="Levels">Feature levels the graph offers (the cut can be any of 1..Levels).</param>
internal sealed record ImportedStem(ConvGraphSpec Spec, List<(float[] Weight, float[] Bias)> Convs, float[]? MeanImage, int MeanHeight, int MeanWidth, bool Bgr, int Levels);

/// <summary>
/// Reads a plain convolutional network (Conv, BatchNormalization, Relu, Add/Sum, MaxPool; ResNets as CNTK or PyTorch
/// export them) from an ONNX graph with the library's protobuf reader, up to the global pooling, and cuts it at a
/// feature level: level k ends before the k-th downsampling convolution after the first one (ResNet18: 1 = layer1,
/// stride 4, 64 channels … 4 = layer4, stride 32, 512 channels). BatchNormalization is folded into the convolution
/// before it (inference statistics, as in frozen-BN fine-tuning).
/// </summary>
internal static class OnnxStemImporter
{
    private static readonly HashSet<string> Body = new() { "Conv", "BatchNormalization", "Relu", "Add", "Sum", "MaxPool" };
    private static readonly HashSet<string> Head = new() { "AveragePool", "GlobalAveragePool", "Flatten", "Gemm", "MatMul", "Reshape", "Softmax" };

    /// <summary>Imports <paramref name="model"/> (and the mean/channel order of <paramref name="preprocessing"/>, if given) cut at <paramref name="level"/>.</summary>
    public static ImportedStem Import(byte[] model, byte[]? preprocessing, int level, string source)
    {
        var g = OnnxGraph.Parse(model);
        var nodes = new List<OnnxNode>();
        string? final = null;
        foreach (var n in g.Nodes)
        {
            if (Head.Contains(n.OpType)) { final = n.Inputs[0]; break; }
            if (!Body.Contains(n.OpType))
                throw new NotSupportedException($"{source}: node '{n.Name}' is a {n.OpType}; a pretrained stem may only hold Conv, BatchNormalization, Relu, Add and MaxPool before its pooling head.");
            nodes.Add(n);
        }
        if (nodes.Count == 0 || nodes[0].OpType != "Conv") throw new InvalidDataException($"{source}: the graph does not start with a convolution.");
        string input = nodes[0].Inputs[0];
        final ??= nodes[^1].Outputs[0];

        // Feature levels: the tensors entering each downsampling convolution after the first one, then the final map.
        var levels = new List<string>();
        foreach (var n in nodes.Where(n => n.OpType == "Conv" && n.Inputs[0] != input))
            if (Ints(n, "strides", 2).Any(s => s > 1) && !levels.Contains(n.Inputs[0])) levels.Add(n.Inputs[0]);
        levels.Add(final);
        if (level < 1 || level > levels.Count)
            throw new ArgumentOutOfRangeException(nameof(level), level, $"{source} offers feature levels 1..{levels.Count}; got {level}.");
        string output = levels[level - 1];

        // Keep the nodes the output depends on, in file order.
        var producer = nodes.SelectMany(n => n.Outputs.Select(o => (o, n))).ToDictionary(p => p.o, p => p.n);
        var needed = new HashSet<OnnxNode>();
        var stack = new Stack<string>(new[] { output });
        while (stack.Count > 0)
            if (producer.TryGetValue(stack.Pop(), out var p) && needed.Add(p))
                foreach (var i in p.Inputs.Where(i => !g.Initializers.ContainsKey(i))) stack.Push(i);
        var kept = nodes.Where(needed.Contains).ToList();

        var ops = new List<ConvGraphOp>();
        var convs = new List<(float[] Weight, float[] Bias)>();
        var channels = new Dictionary<string, long> { [input] = 3 };
        var stride = new Dictionary<string, long> { [input] = 1 };
        // A folded convolution writes the BatchNormalization's output name, so its consumers read it unchanged.
        for (int idx = 0; idx < kept.Count; idx++)
        {
            var n = kept[idx];
            string outName = n.Outputs[0];
            switch (n.OpType)
            {
                case "Conv":
                {
                    var w = Const(g, n.Inputs[1], source, n);
                    var weight = w.ToFloats();
                    long outC = w.Dims[0];
                    var bias = n.Inputs.Count > 2 && n.Inputs[2] != "" ? Const(g, n.Inputs[2], source, n).ToFloats() : new float[outC];
                    CheckAutoPad(n, source);
                    // Fold a BatchNormalization that alone reads this convolution.
                    var users = kept.Where(u => u.Inputs.Contains(outName)).ToList();
                    if (users.Count == 1 && users[0].OpType == "BatchNormalization")
                    {
                        var bn = users[0];
                        Fold(g, bn, weight, bias, outC, source);
                        outName = bn.Outputs[0];
                        needed.Remove(bn);
                    }
                    ops.Add(new ConvGraphOp
                    {
                        Kind = ConvOpKind.Conv, Inputs = new[] { n.Inputs[0] }, Output = outName, Module = convs.Count,
                        WeightShape = w.Dims.ToArray(), Kernel = Ints(n, "kernel_shape", w.Dims[2], w.Dims[3]), Stride = Ints(n, "strides", 1, 1),
                        Pads = Ints(n, "pads", 0, 0, 0, 0), Dilation = Ints(n, "dilations", 1, 1), Group = (int)(n.Int("group") ?? 1),
                        SamePadding = Same(Ints(n, "pads", 0, 0, 0, 0)),
                    });
                    convs.Add((weight, bias));
                    channels[outName] = outC;
                    stride[outName] = stride[n.Inputs[0]] * Ints(n, "strides", 1, 1)[0];
                    break;
                }
                case "BatchNormalization":
                    if (!needed.Contains(n)) break;                                  // folded above
                    throw new NotSupportedException($"{source}: BatchNormalization '{n.Name}' does not directly follow a convolution of its own; it cannot be folded.");
                case "Relu":
                    ops.Add(new ConvGraphOp { Kind = ConvOpKind.Relu, Inputs = new[] { n.Inputs[0] }, Output = outName });
                    Carry(n.Inputs[0], outName);
                    break;
                case "Add":
                case "Sum":
                    if (n.Inputs.Count != 2 || n.Inputs.Any(g.Initializers.ContainsKey))
                        throw new NotSupportedException($"{source}: {n.OpType} '{n.Name}' must add two computed tensors (a residual connection).");
                    ops.Add(new ConvGraphOp { Kind = ConvOpKind.Add, Inputs = n.Inputs.ToArray(), Output = outName });
                    Carry(n.Inputs[0], outName);
                    break;
                case "MaxPool":
                    CheckAutoPad(n, source);
                    if ((n.Int("ceil_mode") ?? 0) != 0) throw new NotSupportedException($"{source}: MaxPool '{n.Name}' uses ceil_mode; only floor mode is supported.");
                    var k = Ints(n, "kernel_shape");
                    ops.Add(new ConvGraphOp
                    {
                        Kind = ConvOpKind.MaxPool, Inputs = new[] { n.Inputs[0] }, Output = outName,
                        Kernel = k, Stride = Ints(n, "strides", 1, 1), Pads = Ints(n, "pads", 0, 0, 0, 0), SamePadding = Same(Ints(n, "pads", 0, 0, 0, 0)),
                    });
                    channels[outName] = channels[n.Inputs[0]];
                    stride[outName] = stride[n.Inputs[0]] * Ints(n, "strides", 1, 1)[0];
                    break;
            }
        }

        void Carry(string from, string to)
        {
            channels[to] = channels[from];
            stride[to] = stride[from];
        }

        var spec = new ConvGraphSpec
        {
            Source = $"{source}, level {level} of {levels.Count}", Input = input, Output = output,
            OutputChannels = (int)channels[output], TotalStride = (int)stride[output], Ops = ops,
        };
        spec.Validate();
        var (mean, mh, mw, bgr) = preprocessing is null ? (null, 0, 0, false) : ReadPreprocessing(preprocessing, source);
        return new ImportedStem(spec, convs, mean, mh, mw, bgr, levels.Count);
    }

    /// <summary>
    /// The input convention of a preprocessing graph such as ResNetPreprocess.onnx: Split of the RGB planes, Concat in
    /// reverse (BGR), Sub of a mean image.
    /// </summary>
    private static (float[]? Mean, int H, int W, bool Bgr) ReadPreprocessing(byte[] model, string source)
    {
        var g = OnnxGraph.Parse(model);
        bool bgr = false;
        var split = g.Nodes.FirstOrDefault(n => n.OpType == "Split");
        var concat = g.Nodes.FirstOrDefault(n => n.OpType == "Concat");
        if (split is not null && concat is not null && split.Outputs.Count == 3)
            bgr = concat.Inputs.SequenceEqual(split.Outputs.Reverse());
        float[]? mean = null; int h = 0, w = 0;
        var sub = g.Nodes.FirstOrDefault(n => n.OpType == "Sub");
        if (sub is not null && g.Constant(sub.Inputs[1]) is { } m)
        {
            var dims = m.Dims.SkipWhile(d => d == 1).ToArray();
            if (dims.Length != 3 || dims[0] != 3)
                throw new InvalidDataException($"{source}: the preprocessing mean has shape [{string.Join(", ", m.Dims)}]; expected [1, 3, h, w].");
            (h, w, mean) = ((int)dims[1], (int)dims[2], m.ToFloats());
        }
        return (mean, h, w, bgr);
    }

    private static void Fold(OnnxGraph g, OnnxNode bn, float[] weight, float[] bias, long outC, string source)
    {
        var scale = Const(g, bn.Inputs[1], source, bn).ToFloats();
        var shift = Const(g, bn.Inputs[2], source, bn).ToFloats();
        var mean = Const(g, bn.Inputs[3], source, bn).ToFloats();
        var variance = Const(g, bn.Inputs[4], source, bn).ToFloats();
        if (scale.Length != outC) throw new InvalidDataException($"{source}: BatchNormalization '{bn.Name}' has {scale.Length} channels after a convolution of {outC}.");
        double eps = bn.Float("epsilon") ?? 1e-5;
        long per = weight.Length / outC;
        for (int c = 0; c < outC; c++)
        {
            double f = scale[c] / Math.Sqrt(variance[c] + eps);
            for (long i = 0; i < per; i++) weight[c * per + i] = (float)(weight[c * per + i] * f);
            bias[c] = (float)((bias[c] - mean[c]) * f + shift[c]);
        }
    }

    // Asymmetric pads are "same" padding frozen at the export size: the larger side tells where the odd pixel goes.
    private static string? Same(long[] pads)
        => pads.Length == 4 && (pads[0] != pads[2] || pads[1] != pads[3]) ? (pads[0] + pads[1] > pads[2] + pads[3] ? "lower" : "upper") : null;

    private static OnnxTensor Const(OnnxGraph g, string name, string source, OnnxNode node)
        => g.Constant(name) ?? throw new InvalidDataException($"{source}: input '{name}' of {node.OpType} '{node.Name}' is not a constant weight.");

    private static void CheckAutoPad(OnnxNode n, string source)
    {
        if (n.Attributes.TryGetValue("auto_pad", out var a) && a.S is { } s && s != "NOTSET")
            throw new NotSupportedException($"{source}: {n.OpType} '{n.Name}' uses auto_pad = {s}; only explicit pads are supported.");
    }

    private static long[] Ints(OnnxNode n, string attribute, params long[] fallback)
    {
        var v = n.Ints(attribute);
        if (v is not null) return v.ToArray();
        if (fallback.Length == 0) throw new InvalidDataException($"{n.OpType} '{n.Name}' has no '{attribute}' attribute.");
        return fallback;
    }
}

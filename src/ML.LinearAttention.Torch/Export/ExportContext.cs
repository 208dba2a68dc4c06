using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.FineTuning.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Export;

/// <summary>
/// What every module's export needs: the graph, the model's modules and weights by path (LoRA layers read merged,
/// W + B·A·scale), and the mask forms the forward pass uses, built once per graph.
/// </summary>
internal sealed class ExportContext
{
    private readonly Dictionary<string, nn.Module> _modules;
    private readonly Dictionary<string, Tensor> _state;
    private readonly Dictionary<(int, double), (string Cos, string Sin)> _rotary = new();

    public ExportContext(OnnxGraphBuilder graph, nn.Module model, string attentionMask, int maxLength)
    {
        Graph = graph;
        MaxLength = maxLength;
        _modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        _state = model.state_dict();
        var g = graph;
        MaskFloat = g.Cast(attentionMask, OnnxElementType.Float);                  // [B, T]
        MaskBool = g.Cast(attentionMask, OnnxElementType.Bool);                    // [B, T]
        TokenMask = g.Unsqueeze(MaskFloat, -1);                                    // [B, T, 1]
        HeadTokenMask = g.Unsqueeze(MaskFloat, 1, -1);                             // [B, 1, T, 1]
        KeyMask = g.Unsqueeze(MaskBool, 1, 2);                                     // [B, 1, 1, T]
        ValidCount = g.Max(g.ReduceSum(HeadTokenMask, true, 2), g.Scalar(1));      // [B, 1, 1, 1]
        Length = g.Dim(attentionMask, 1);
        Positions = g.Range(Length);
    }

    public OnnxGraphBuilder Graph { get; }
    public int MaxLength { get; }
    public string MaskFloat { get; }
    public string MaskBool { get; }
    public string TokenMask { get; }
    public string HeadTokenMask { get; }
    public string KeyMask { get; }
    public string ValidCount { get; }
    public string Length { get; }
    public string Positions { get; }

    /// <summary>x · mask over [B, T, C] (or [B, H, T, D] with <paramref name="heads"/>): Heads.ZeroPadded.</summary>
    public string ZeroPadded(string x, bool heads = false) => Graph.Mul(x, heads ? HeadTokenMask : TokenMask);

    public nn.Module Module(string path)
        => _modules.TryGetValue(path, out var m) ? m : throw new InvalidOperationException($"The model has no module '{path}'; the exporter and the model disagree.");

    public bool HasModule(string path) => _modules.ContainsKey(path);

    public Tensor Weight(string path)
        => _state.TryGetValue(path, out var t) ? t : throw new InvalidOperationException($"The model has no weight '{path}'; the exporter and the model disagree.");

    public Tensor? OptionalWeight(string path) => _state.TryGetValue(path, out var t) ? t : null;

    /// <summary>Weight and bias of the linear layer at <paramref name="path"/>; a LoRA layer gives its merged weight.</summary>
    public (Tensor Weight, Tensor? Bias) LinearWeights(string path) => Module(path) switch
    {
        Linear l => (l.weight!, l.bias),
        LoraLinear lora => (lora.Merged ? lora.BaseWeight : lora.BaseWeight + lora.DeltaWeight().to(lora.BaseWeight.dtype), lora.BaseBias),
        var m => throw new NotSupportedException($"Module '{path}' is a {m.GetType().Name}, not a linear layer (or a LoRA one); it cannot be exported."),
    };

    /// <summary>The linear layer at <paramref name="path"/> applied to x.</summary>
    public string Linear(string x, string path)
    {
        var (w, b) = LinearWeights(path);
        return Graph.Linear(x, w, b, path);
    }

    /// <summary>The RmsNorm module at <paramref name="path"/> applied to x.</summary>
    public string RmsNorm(string x, string path)
    {
        var norm = (RmsNorm)Module(path);
        return Graph.RmsNorm(x, Weight(path + ".weight"), norm.Eps, path);
    }

    /// <summary>The LayerNorm module at <paramref name="path"/> applied to x.</summary>
    public string LayerNorm(string x, string path)
    {
        var norm = (LayerNorm)Module(path);
        return Graph.LayerNorm(x, norm.weight!, norm.bias, norm.eps, path);
    }

    /// <summary>Rotary positions on [B, H, T, D] (Rotary.Apply, half-split layout), from cos/sin tables of MaxLength rows.</summary>
    public string Rotary(string x, int headDim, double theta)
    {
        var g = Graph;
        if (!_rotary.TryGetValue((headDim, theta), out var tables))
        {
            using var scope = NewDisposeScope();
            // The same float32 arithmetic as Rotary.Apply, so the tables hold the angles libtorch uses.
            var invFreq = (torch.arange(0, headDim, 2, dtype: ScalarType.Float32) * (-Math.Log(theta) / headDim)).exp();
            var angles = torch.arange(MaxLength, dtype: ScalarType.Float32).unsqueeze(1) * invFreq.unsqueeze(0);
            var cos = g.Node("Slice", new[] { g.Initializer("rotary_cos", angles.cos()), g.Ints(0), Length, g.Ints(0) });
            var sin = g.Node("Slice", new[] { g.Initializer("rotary_sin", angles.sin()), g.Ints(0), Length, g.Ints(0) });
            tables = (cos, sin);
            _rotary[(headDim, theta)] = tables;
        }
        int half = headDim / 2;
        var x1 = g.Slice(x, 0, half, -1);
        var x2 = g.Slice(x, half, headDim, -1);
        return g.Concat(-1,
            g.Sub(g.Mul(x1, tables.Cos), g.Mul(x2, tables.Sin)),
            g.Add(g.Mul(x2, tables.Cos), g.Mul(x1, tables.Sin)));
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hybrid;
using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using static TorchSharp.torch;
using Microsoft.ML.LinearAttention.FineTuning;

namespace Microsoft.ML.LinearAttention.Conversion;

/// <summary>One layer that a conversion replaces: its index and the new mechanism.</summary>
/// <param name="Layer">0-based layer index.</param>
/// <param name="Name">Registry name of the new mechanism.</param>
/// <param name="Options">Its options.</param>
public sealed record ConvertedLayer(int Layer, string Name, MixerOptions Options);

/// <summary>
/// Module surgery of the softmax→linear conversion: which softmax layers become which mechanism, the converted
/// encoder configuration, and the converted model with every weight of the softmax model that still fits (embeddings,
/// norms, FFNs, head, and the q/k/v/o projections of converted layers) copied over.
/// </summary>
public static class SoftmaxConversion
{
    /// <summary>
    /// The layers of <paramref name="config"/> that become <paramref name="attention"/>. Explicit
    /// <paramref name="layers"/> (0-based, negative from the end) must be softmax layers; a <paramref name="hybridPlan"/>
    /// (HybridPlan text form whose base mechanism is <paramref name="attention"/>) keeps its plain-softmax layers; with
    /// neither, every softmax layer is converted.
    /// </summary>
    public static IReadOnlyList<ConvertedLayer> Plan(EncoderConfig config, string attention, MixerOptions? attentionOptions = null,
        int[]? layers = null, string? hybridPlan = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrWhiteSpace(attention);
        if (layers is not null && hybridPlan is not null)
            throw new ArgumentException("Give either the layers to convert or a hybrid plan, not both (ConversionOptions.Layers / HybridPlan).");
        int n = config.NumLayers;
        string target = MixerRegistry.Get(attention).Name;
        var targetOptions = attentionOptions ?? MixerRegistry.DefaultOptions(target);
        bool IsSoftmax(int i) => string.Equals(config.MixerFor(i).Name, "softmax", StringComparison.OrdinalIgnoreCase);
        var plan = new List<ConvertedLayer>();
        if (hybridPlan is not null)
        {
            foreach (var m in HybridPlan.Parse(hybridPlan).Resolve(n, target, targetOptions))
            {
                if (string.Equals(m.Name, "softmax", StringComparison.OrdinalIgnoreCase)) continue;   // stays the pretrained softmax
                if (!IsSoftmax(m.LayerIndex))
                    throw new ArgumentException($"HybridPlan '{hybridPlan}' converts layer {m.LayerIndex}, which is '{config.MixerFor(m.LayerIndex).Name}', not softmax; only softmax layers are converted.");
                plan.Add(new ConvertedLayer(m.LayerIndex, m.Name, m.Options));
            }
        }
        else if (layers is not null)
        {
            foreach (int raw in layers)
            {
                int i = raw < 0 ? n + raw : raw;
                if (i < 0 || i >= n) throw new ArgumentOutOfRangeException(nameof(layers), raw, $"Conversion layer {raw} does not exist; the encoder has {n} layers (0..{n - 1}, or -1..-{n}).");
                if (plan.Any(p => p.Layer == i)) throw new ArgumentException($"Conversion layer {i} is listed twice in ConversionOptions.Layers.");
                if (!IsSoftmax(i)) throw new ArgumentException($"Conversion layer {i} is '{config.MixerFor(i).Name}', not softmax; only softmax layers are converted.");
                plan.Add(new ConvertedLayer(i, target, targetOptions));
            }
            plan.Sort((a, b) => a.Layer.CompareTo(b.Layer));
        }
        else
        {
            for (int i = 0; i < n; i++) if (IsSoftmax(i)) plan.Add(new ConvertedLayer(i, target, targetOptions));
        }
        if (plan.Count == 0)
            throw new ArgumentException("The conversion replaces no layer: the encoder has no softmax layer, or the plan keeps every layer softmax.");
        foreach (var p in plan)
        {
            var info = MixerRegistry.Get(p.Name);
            if (!info.SupportsBidirectional)
                throw new ArgumentException($"Mechanism '{p.Name}' has no bidirectional form and cannot replace the softmax of an encoder layer.");
            if (config.Position == PositionEncoding.Rope && !MixerSupportsRope(p, config))
                throw new ArgumentException($"Mechanism '{p.Name}' cannot take the rotary positions of this encoder (no q/k projections to rotate); convert to a projected mechanism (hedgehog, lolcats, linear, …).");
        }
        return plan;
    }

    private static bool MixerSupportsRope(ConvertedLayer p, EncoderConfig config)
    {
        using var probe = MixerRegistry.Create(p.Name, new MixerConfig(config.ModelDim, config.NumHeads, false, p.Layer, config.NumLayers), p.Options);
        return probe.SupportsQueryKeyTransform;
    }

    /// <summary>The configuration of the converted encoder: a per-layer plan with the new mechanisms at the converted layers.</summary>
    public static EncoderConfig ConvertedConfig(EncoderConfig config, IReadOnlyList<ConvertedLayer> plan)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(plan);
        return config with
        {
            Layers = EncoderConfig.Plan(i =>
            {
                var p = plan.FirstOrDefault(c => c.Layer == i);
                if (p is not null) return new LayerMixer(p.Name, p.Options);
                var (name, options) = config.MixerFor(i);
                return new LayerMixer(name, options);
            }, config.NumLayers),
        };
    }

    /// <summary>
    /// Builds the converted model on the teacher's device and copies into it every parameter and buffer of
    /// <paramref name="softmax"/> whose name and shape it shares. <paramref name="newParameters"/> are the converted
    /// model's parameters that got no weights (feature maps, window factors, gates …): what attention transfer trains.
    /// </summary>
    public static SequenceModel Convert(SequenceModel softmax, IReadOnlyList<ConvertedLayer> plan, out IReadOnlyList<string> newParameters)
    {
        ArgumentNullException.ThrowIfNull(softmax);
        var device = softmax.parameters().First().device;
        var student = FineTuningRegistry.CreateModel(ConvertedConfig(softmax.Config, plan));
        try
        {
            student.to(device);
            var source = softmax.state_dict();
            var fresh = new List<string>();
            using (torch.no_grad())
            {
                foreach (var (name, p) in student.named_parameters())
                {
                    if (source.TryGetValue(name, out var w) && w.shape.SequenceEqual(p.shape)) p.copy_(w);
                    else fresh.Add(name);
                }
                foreach (var (name, b) in student.named_buffers())
                    if (source.TryGetValue(name, out var w) && w.shape.SequenceEqual(b.shape)) b.copy_(w);
            }
            newParameters = fresh;
            return student;
        }
        catch
        {
            student.Dispose();
            throw;
        }
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hybrid;
using Microsoft.ML.LinearAttention.Encoder;
using KernelOptions = Microsoft.ML.LinearAttention.Attention.PlainLinear.LinearMixerOptions;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// One encoder variant of the end-to-end benchmarks: the mechanism of every layer, and the position scheme that fits
/// them (rotary when every layer has q/k projections to rotate, otherwise none: decays and short convolutions already
/// see order).
/// </summary>
/// <param name="Label">Name in tables and plots.</param>
/// <param name="Layers">Mechanism and options of each layer.</param>
public sealed record BenchmarkMechanism(string Label, IReadOnlyList<LayerMixer> Layers)
{
    /// <summary>The --mechanisms entry this came from (to hand the same mechanism to a child process).</summary>
    public string Entry { get; init; } = Label;

    /// <summary>True when any layer runs full softmax attention (cost per token grows with T).</summary>
    public bool HasSoftmax => Layers.Any(l => l.Name == "softmax");

    /// <summary>
    /// Parses a comma-separated list (commas inside braces do not split). Each entry is a registry name, optionally
    /// with options as JSON (<c>linear{"FeatureMap":"relu"}</c>); <c>linear_relu</c> is short for the relu feature
    /// map; <c>hybrid</c> is <paramref name="hybridPlan"/> over <paramref name="hybridBase"/>.
    /// </summary>
    public static IReadOnlyList<BenchmarkMechanism> ParseList(string list, int numLayers, string hybridPlan, string hybridBase)
    {
        var result = new List<BenchmarkMechanism>();
        foreach (var entry in SplitTopLevel(list))
            result.Add(Parse(entry, numLayers, hybridPlan, hybridBase));
        if (result.Count == 0) throw new ArgumentException("--mechanisms lists no mechanism.");
        return result;
    }

    /// <summary>Parses one entry of <see cref="ParseList"/>.</summary>
    public static BenchmarkMechanism Parse(string entry, int numLayers, string hybridPlan, string hybridBase)
    {
        entry = entry.Trim();
        if (entry == "linear_relu")
            return Uniform("linear_relu", "linear", new KernelOptions { FeatureMap = "relu" }, numLayers) with { Entry = entry };
        if (entry == "hybrid")
        {
            var plan = HybridPlan.Parse(hybridPlan);
            var (baseName, baseOptions) = NameAndOptions(hybridBase);
            var layers = plan.Resolve(numLayers, baseName, baseOptions).Select(l => new LayerMixer(l.Name, l.Options)).ToList();
            var others = layers.Select((l, i) => (l.Name, i)).Where(x => x.Name != baseName).ToList();
            string where = others.Count == 0 ? "no other layer" : string.Join(" ", others.GroupBy(x => x.Name).Select(g => $"{g.Key}@{string.Join(",", g.Select(x => x.i))}"));
            return new BenchmarkMechanism($"hybrid {plan} ({baseName} + {where})", layers) { Entry = entry };
        }
        var (name, options) = NameAndOptions(entry);
        return Uniform(entry, name, options, numLayers);
    }

    private static BenchmarkMechanism Uniform(string label, string name, MixerOptions? options, int numLayers)
        => new(label, Enumerable.Range(0, numLayers).Select(_ => new LayerMixer(name, options)).ToList());

    private static (string Name, MixerOptions? Options) NameAndOptions(string entry)
    {
        int brace = entry.IndexOf('{');
        string name = brace < 0 ? entry : entry[..brace];
        if (!MixerRegistry.Contains(name))
            throw new ArgumentException($"Unknown mechanism '{name}' in --mechanisms. Known: {string.Join(", ", MixerRegistry.All.Select(m => m.Name))}, plus linear_relu and hybrid.");
        return (MixerRegistry.Get(name).Name, brace < 0 ? null : MixerRegistry.DeserializeOptions(name, entry[brace..]));
    }

    /// <summary>Rotary positions when every layer can take them, otherwise none.</summary>
    public PositionEncoding Position(int modelDim, int heads)
    {
        foreach (var (name, options) in Layers.Select(l => (l.Name, l.Options)).Distinct())
        {
            using var mixer = MixerRegistry.Create(name, new MixerConfig(modelDim, heads), options);
            if (!mixer.SupportsQueryKeyTransform) return PositionEncoding.None;
        }
        return PositionEncoding.Rope;
    }

    internal static IEnumerable<string> SplitTopLevel(string list)
    {
        int depth = 0, start = 0;
        for (int i = 0; i < list.Length; i++)
        {
            if (list[i] == '{') depth++;
            else if (list[i] == '}') depth--;
            else if (list[i] == ',' && depth == 0)
            {
                if (i > start) yield return list[start..i];
                start = i + 1;
            }
        }
        if (start < list.Length) yield return list[start..];
    }
}

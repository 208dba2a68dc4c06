using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;

namespace Microsoft.ML.LinearAttention.Attention.Hybrid;

/// <summary>The mechanism of one layer: a registry name and its options.</summary>
/// <param name="LayerIndex">0-based layer index.</param>
/// <param name="Name">Registry name (see <see cref="MixerRegistry"/>).</param>
/// <param name="Options">The mechanism's options.</param>
public sealed record LayerMechanism(int LayerIndex, string Name, MixerOptions Options);

/// <summary>
/// Which attention mechanism each layer of an encoder uses: every layer runs the encoder's base mechanism (e.g. a
/// linear one) unless a clause of the plan assigns another. Clauses apply in order; a later clause overrides an
/// earlier one on the layers they share.
/// <para>Text form (<see cref="Parse"/>, <see cref="ToString"/>; clauses separated by ';'):</para>
/// <list type="bullet">
/// <item><c>3:1</c> — linear:full ratio. Layers form groups of 3 + 1 and the LAST layer of each group is softmax, so with
/// 0-based indices layers 3, 7, 11, … are softmax (Kimi Linear's 3:1 KDA:MLA interleave; §1.21). <c>L:F</c> in general:
/// layer i is softmax when i mod (L+F) ≥ L.</item>
/// <item><c>softmax@3,7</c> (or just <c>3,7</c>; <c>full</c> = <c>softmax</c>) — full softmax at the listed layers.
/// Negative indices count from the end: <c>softmax@-1</c> is the last layer.</item>
/// <item><c>swa:512@0,2</c> — banded sliding-window softmax ("swa") with window 512 at layers 0 and 2.</item>
/// <item><c>name@0</c> or <c>name{"Option":value}@0</c> — any registered mechanism, with options as JSON.</item>
/// <item><c>none</c> (or empty) — every layer runs the base mechanism.</item>
/// </list>
/// Example: <c>3:1;swa:512@0</c> — softmax at 3, 7, …, SWA at layer 0, the base mechanism elsewhere.
/// </summary>
public sealed class HybridPlan : IEquatable<HybridPlan>
{
    private readonly IReadOnlyList<HybridClause> _clauses;

    internal HybridPlan(IReadOnlyList<HybridClause> clauses) => _clauses = clauses;

    /// <summary>The plan that changes nothing: every layer runs the base mechanism.</summary>
    public static HybridPlan None { get; } = new(Array.Empty<HybridClause>());

    /// <summary>Every group of <paramref name="linear"/> + <paramref name="full"/> layers ends with
    /// <paramref name="full"/> softmax layers ("3:1" → softmax at 3, 7, …).</summary>
    public static HybridPlan Ratio(int linear, int full) => None.ThenRatio(linear, full);

    /// <summary>Full softmax at the given layers (negative = from the end).</summary>
    public static HybridPlan SoftmaxAt(params int[] layers) => None.ThenSoftmaxAt(layers);

    /// <summary>Banded sliding-window softmax ("swa") with <paramref name="window"/> at the given layers.</summary>
    public static HybridPlan SlidingWindowAt(int window, params int[] layers) => None.ThenSlidingWindowAt(window, layers);

    /// <summary>Any registered mechanism (options null = its defaults) at the given layers.</summary>
    public static HybridPlan MechanismAt(string name, MixerOptions? options, params int[] layers) => None.ThenMechanismAt(name, options, layers);

    /// <summary>This plan followed by a ratio clause.</summary>
    public HybridPlan ThenRatio(int linear, int full)
    {
        HybridClause.CheckRatio(linear, full, $"{linear}:{full}");
        return Append(new RatioClause(linear, full));
    }

    /// <summary>This plan followed by softmax at the given layers.</summary>
    public HybridPlan ThenSoftmaxAt(params int[] layers) => ThenMechanismAt("softmax", null, layers);

    /// <summary>This plan followed by sliding-window softmax at the given layers.</summary>
    public HybridPlan ThenSlidingWindowAt(int window, params int[] layers)
    {
        if (window <= 0)
            throw new ArgumentOutOfRangeException(nameof(window), window, "The sliding window must be positive, e.g. HybridPlan.SlidingWindowAt(512, 0, 2).");
        return ThenMechanismAt("swa", new SlidingWindowOptions { Window = window }, layers);
    }

    /// <summary>This plan followed by a mechanism at the given layers.</summary>
    public HybridPlan ThenMechanismAt(string name, MixerOptions? options, params int[] layers)
    {
        var info = MixerRegistry.Get(name);
        options ??= MixerRegistry.DefaultOptions(info.Name);
        if (!info.OptionsType.IsInstanceOfType(options))
            throw new ArgumentException($"Mechanism '{info.Name}' takes options of type {info.OptionsType.Name}, not {options.GetType().Name}.", nameof(options));
        var list = layers?.ToArray() ?? Array.Empty<int>();
        HybridClause.CheckLayers(list, info.Name);
        return Append(new AssignClause(info.Name, options, list));
    }

    /// <summary>This plan's clauses followed by another plan's (which override on shared layers).</summary>
    public HybridPlan Then(HybridPlan other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new HybridPlan(_clauses.Concat(other._clauses).ToArray());
    }

    private HybridPlan Append(HybridClause clause) => new(_clauses.Append(clause).ToArray());

    /// <summary>True when no clause changes any layer.</summary>
    public bool IsNone => _clauses.Count == 0;

    /// <summary>
    /// The mechanism of every layer of a <paramref name="numLayers"/>-layer encoder whose base mechanism is
    /// <paramref name="baseName"/> (options null = its defaults).
    /// </summary>
    public IReadOnlyList<LayerMechanism> Resolve(int numLayers, string baseName, MixerOptions? baseOptions = null)
    {
        if (numLayers <= 0) throw new ArgumentOutOfRangeException(nameof(numLayers), numLayers, "An encoder needs at least one layer.");
        var info = MixerRegistry.Get(baseName);
        baseOptions ??= MixerRegistry.DefaultOptions(info.Name);
        if (!info.OptionsType.IsInstanceOfType(baseOptions))
            throw new ArgumentException($"Base mechanism '{info.Name}' takes options of type {info.OptionsType.Name}, not {baseOptions.GetType().Name}.", nameof(baseOptions));
        var layers = Enumerable.Range(0, numLayers).Select(i => new LayerMechanism(i, info.Name, baseOptions)).ToArray();
        foreach (var clause in _clauses)
            foreach (var (layer, name, options) in clause.Assignments(numLayers, this))
                layers[layer] = new LayerMechanism(layer, name, options);
        return layers;
    }

    /// <summary>The mechanism of one layer (<see cref="Resolve"/> for that layer).</summary>
    public LayerMechanism ForLayer(int layerIndex, int numLayers, string baseName, MixerOptions? baseOptions = null)
    {
        if (layerIndex < 0 || layerIndex >= numLayers)
            throw new ArgumentOutOfRangeException(nameof(layerIndex), layerIndex, $"Layer index must lie in 0..{numLayers - 1}.");
        return Resolve(numLayers, baseName, baseOptions)[layerIndex];
    }

    /// <summary>Builds the mixer of the layer <c>config.LayerIndex</c> of a <c>config.NumLayers</c>-layer encoder.</summary>
    public TokenMixer CreateMixer(MixerConfig config, string baseName, MixerOptions? baseOptions = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var layer = ForLayer(config.LayerIndex, config.NumLayers, baseName, baseOptions);
        return MixerRegistry.Create(layer.Name, config, layer.Options);
    }

    /// <summary>Reads the text form (see the type's remarks). Errors quote the input and show valid examples.</summary>
    /// <exception cref="FormatException">The text is not a valid plan.</exception>
    public static HybridPlan Parse(string spec) => HybridPlanParser.Parse(spec);

    /// <summary>Like <see cref="Parse"/>, without throwing; <paramref name="error"/> says what is wrong.</summary>
    public static bool TryParse(string spec, out HybridPlan plan, out string error)
    {
        try
        {
            plan = Parse(spec);
            error = "";
            return true;
        }
        catch (FormatException e)
        {
            plan = None;
            error = e.Message;
            return false;
        }
    }

    /// <summary>The canonical text form; <c>Parse(plan.ToString())</c> equals <c>plan</c>.</summary>
    public override string ToString() => IsNone ? "none" : string.Join(";", _clauses.Select(c => c.ToString()));

    public bool Equals(HybridPlan? other) => other is not null && ToString() == other.ToString();

    public override bool Equals(object? obj) => obj is HybridPlan other && Equals(other);

    public override int GetHashCode() => ToString().GetHashCode(StringComparison.Ordinal);

    public static bool operator ==(HybridPlan? a, HybridPlan? b) => a is null ? b is null : a.Equals(b);

    public static bool operator !=(HybridPlan? a, HybridPlan? b) => !(a == b);
}

/// <summary>One clause of a plan.</summary>
internal abstract record HybridClause
{
    internal abstract IEnumerable<(int Layer, string Name, MixerOptions Options)> Assignments(int numLayers, HybridPlan plan);

    internal static void CheckRatio(int linear, int full, string text)
    {
        if (linear < 0 || full < 1)
            throw new ArgumentOutOfRangeException(nameof(full), $"Ratio '{text}' needs linear ≥ 0 and full ≥ 1 layers per group, e.g. 3:1 (softmax at layers 3, 7, …).");
    }

    internal static void CheckLayers(int[] layers, string name)
    {
        if (layers.Length == 0)
            throw new ArgumentException($"Give at least one layer index for '{name}', e.g. {name}@0,2 (negative indices count from the end).", nameof(layers));
        var twice = layers.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new ArgumentException($"Layer {twice.Key} is listed twice for '{name}'.", nameof(layers));
    }
}

/// <summary>"L:F": layer i is softmax when i mod (L+F) ≥ L.</summary>
internal sealed record RatioClause(int Linear, int Full) : HybridClause
{
    internal override IEnumerable<(int Layer, string Name, MixerOptions Options)> Assignments(int numLayers, HybridPlan plan)
    {
        for (int i = 0; i < numLayers; i++)
            if (i % (Linear + Full) >= Linear)
                yield return (i, "softmax", new SoftmaxOptions());
    }

    public override string ToString() => $"{Linear}:{Full}";
}

/// <summary>"name@i,j": a mechanism at explicit layers.</summary>
internal sealed record AssignClause(string Name, MixerOptions Options, int[] Layers) : HybridClause
{
    internal override IEnumerable<(int Layer, string Name, MixerOptions Options)> Assignments(int numLayers, HybridPlan plan)
    {
        foreach (int index in Layers)
        {
            if (index >= numLayers || index < -numLayers)
                throw new ArgumentOutOfRangeException(nameof(numLayers),
                    $"Hybrid plan '{plan}': layer {index} in '{this}' does not exist in a {numLayers}-layer encoder (valid: 0..{numLayers - 1}, or -{numLayers}..-1 from the end).");
            yield return (index < 0 ? numLayers + index : index, Name, Options);
        }
    }

    public override string ToString() => $"{HybridPlanParser.FormatMechanism(Name, Options)}@{string.Join(",", Layers)}";
}

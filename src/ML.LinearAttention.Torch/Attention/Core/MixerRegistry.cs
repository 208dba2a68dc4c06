using System.Collections.Concurrent;
using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Attention;

/// <summary>What the registry knows of one mechanism.</summary>
/// <param name="Name">Registry name, case-insensitive (e.g. "hedgehog").</param>
/// <param name="Description">One line for docs and error messages.</param>
/// <param name="OptionsType">Its options record type.</param>
/// <param name="SupportsBidirectional">Has a non-causal (encoder) form.</param>
/// <param name="SupportsCausal">Has a causal form.</param>
public sealed record MixerInfo(string Name, string Description, Type OptionsType, bool SupportsBidirectional, bool SupportsCausal)
{
    internal Func<MixerConfig, MixerOptions, TokenMixer> Factory { get; init; } = null!;

    /// <summary>Kernel-level benchmark cases of the mechanism (fast kernel only, no projections), or null.</summary>
    public Func<KernelBenchShape, IEnumerable<KernelBenchCase>>? BenchCases { get; init; }

    /// <summary>
    /// Forward FLOPs per token of the mechanism's attention kernel (everything between its projections, encoder form),
    /// for options of its type or null (its defaults); null when the mechanism declares none. See <see cref="FlopShape"/>.
    /// </summary>
    public Func<FlopShape, MixerOptions?, double>? AttentionFlops { get; init; }
}

/// <summary>
/// Sizes at which a mechanism counts its attention FLOPs (<see cref="MixerInfo.AttentionFlops"/>), by the PaLM /
/// Megatron convention: a multiply-add is 2 FLOPs, elementwise work is ignored, and weight matrices applied to every
/// token (projections, convolutions, learned feature maps) are not counted here: they are parameters, counted as 2·N.
/// </summary>
/// <param name="T">Tokens per sequence.</param>
/// <param name="Heads">Heads H of the layer.</param>
/// <param name="HeadDim">Head size D = C / H.</param>
/// <param name="LayerIndex">0-based layer index (mechanisms that alternate by depth read it).</param>
/// <param name="NumLayers">Layers of the encoder.</param>
public sealed record FlopShape(long T, int Heads, int HeadDim, int LayerIndex = 0, int NumLayers = 1)
{
    /// <summary>Hidden size C = H·D.</summary>
    public long ModelDim => (long)Heads * HeadDim;

    /// <summary>Keys a query sees under a window of <paramref name="window"/> each side (bidirectional band), capped at T.</summary>
    public double BandKeys(int window) => Math.Min(T, 2L * window + 1);

    /// <summary>
    /// Normalised linear attention with feature size <paramref name="features"/> and values of <paramref name="valueDim"/>:
    /// the state φ(K)ᵀV and the read-out φ(Q)·S (4·F·Dv), plus the normaliser (4·F) when <paramref name="normalized"/>; per head.
    /// </summary>
    public static double LinearKernel(double features, double valueDim, bool normalized = true)
        => 4 * features * valueDim + (normalized ? 4 * features : 0);

    /// <summary>Chunkwise scan with decays (GLA family), one direction, per head: intra-chunk scores and output, state read and update.</summary>
    public static double DecayScan(double chunk, double keyDim, double valueDim) => 2 * chunk * (keyDim + valueDim) + 4 * keyDim * valueDim;

    /// <summary>Chunkwise WY delta-rule scan, one direction, per head: KKᵀ, W, QKᵀ; U and the intra-chunk output; the triangular solve; W·S, Q·S and the update.</summary>
    public static double DeltaScan(double chunk, double keyDim, double valueDim) => 6 * chunk * keyDim + 4 * chunk * valueDim + chunk * chunk / 3 + 6 * keyDim * valueDim;
}

/// <summary>Sizes of one kernel benchmark point: q/k/v are [B, H, T, D] in <paramref name="DType"/> on <paramref name="Device"/>.</summary>
public sealed record KernelBenchShape(long B, long H, long T, long D, TorchSharp.torch.ScalarType DType, TorchSharp.torch.Device Device);

/// <summary>
/// One kernel to time: <paramref name="MakeInputs"/> builds fresh leaf inputs (those that are learned or projected
/// require grad), <paramref name="Run"/> is the fast kernel. The benchmark times Run (fwd) and Run + backward.
/// </summary>
public sealed record KernelBenchCase(string Name, bool Causal, Func<TorchSharp.torch.Tensor[]> MakeInputs, Func<TorchSharp.torch.Tensor[], TorchSharp.torch.Tensor> Run);

/// <summary>
/// The one registry of token mixers: a mechanism is chosen by name plus an options record, so ML.NET options and
/// sweeps can select it. Built-in mechanisms are listed in <see cref="BuiltInMixers"/>.
/// </summary>
public static class MixerRegistry
{
    private static readonly ConcurrentDictionary<string, MixerInfo> Entries = new(StringComparer.OrdinalIgnoreCase);

    static MixerRegistry() => BuiltInMixers.RegisterAll();

    /// <summary>Every registered mechanism, sorted by name.</summary>
    public static IReadOnlyList<MixerInfo> All => Entries.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();

    /// <summary>Adds a mechanism. Names are unique (case-insensitive).</summary>
    public static void Register<TOptions>(string name, string description, bool bidirectional, bool causal,
        Func<MixerConfig, TOptions, TokenMixer> factory, Func<KernelBenchShape, IEnumerable<KernelBenchCase>>? benchCases = null,
        Func<FlopShape, TOptions, double>? flops = null)
        where TOptions : MixerOptions, new()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        var info = new MixerInfo(name, description, typeof(TOptions), bidirectional, causal)
        {
            Factory = (config, options) => factory(config, (TOptions)options),
            BenchCases = benchCases,
            AttentionFlops = flops is null ? null : (shape, options) => flops(shape, options is null ? new TOptions() : (TOptions)options),
        };
        if (!Entries.TryAdd(name, info))
            throw new InvalidOperationException($"A token mixer named '{name}' is already registered.");
    }

    /// <summary>True when <paramref name="name"/> is registered.</summary>
    public static bool Contains(string name) => Entries.ContainsKey(name);

    /// <summary>The registry entry for a name, or an error listing the known names.</summary>
    public static MixerInfo Get(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (Entries.TryGetValue(name, out var info)) return info;
        throw new ArgumentException($"Unknown attention mechanism '{name}'. Known mechanisms: {string.Join(", ", All.Select(e => e.Name))}.", nameof(name));
    }

    /// <summary>The default options of a mechanism.</summary>
    public static MixerOptions DefaultOptions(string name) => (MixerOptions)Activator.CreateInstance(Get(name).OptionsType)!;

    /// <summary>Builds a mixer. <paramref name="options"/> null means the mechanism's defaults.</summary>
    public static TokenMixer Create(string name, MixerConfig config, MixerOptions? options = null)
    {
        var info = Get(name);
        ArgumentNullException.ThrowIfNull(config);
        if (config.Causal && !info.SupportsCausal)
            throw new ArgumentException($"Attention mechanism '{info.Name}' has no causal form; use a bidirectional encoder or one of: " +
                                        string.Join(", ", All.Where(e => e.SupportsCausal).Select(e => e.Name)) + ".");
        if (!config.Causal && !info.SupportsBidirectional)
            throw new ArgumentException($"Attention mechanism '{info.Name}' has no bidirectional form; set Causal = true or use one of: " +
                                        string.Join(", ", All.Where(e => e.SupportsBidirectional).Select(e => e.Name)) + ".");
        options ??= DefaultOptions(name);
        if (!info.OptionsType.IsInstanceOfType(options))
            throw new ArgumentException($"Attention mechanism '{info.Name}' takes options of type {info.OptionsType.Name}, not {options.GetType().Name}.", nameof(options));
        return info.Factory(config, options);
    }

    private static readonly JsonSerializerOptions Json = new() { IncludeFields = true, WriteIndented = false };

    /// <summary>Options as JSON (their concrete type's public properties).</summary>
    public static string SerializeOptions(MixerOptions options) => JsonSerializer.Serialize(options, options.GetType(), Json);

    /// <summary>Reads options written by <see cref="SerializeOptions"/> for the mechanism <paramref name="name"/>.</summary>
    public static MixerOptions DeserializeOptions(string name, string json)
        => (MixerOptions?)JsonSerializer.Deserialize(json, Get(name).OptionsType, Json)
           ?? throw new InvalidDataException($"Options for attention mechanism '{name}' could not be read from '{json}'.");
}

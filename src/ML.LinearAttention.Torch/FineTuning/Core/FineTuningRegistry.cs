using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.FineTuning;

/// <summary>The fine-tuning method a model was set up with, as stored in its <see cref="EncoderConfig"/>.</summary>
/// <param name="Method">Registry name.</param>
/// <param name="OptionsJson">Its options as JSON (null = defaults).</param>
/// <param name="Finished">True once training ended and <see cref="FineTuningRegistry.Finish"/> ran (e.g. LoRA merged).</param>
public sealed record FineTuningSpec(string Method, string? OptionsJson = null, bool Finished = false);

/// <summary>What the registry knows of one method.</summary>
/// <param name="Name">Registry name, case-insensitive (e.g. "lora").</param>
/// <param name="Description">One line for docs and error messages.</param>
/// <param name="OptionsType">Its options record type.</param>
public sealed record FineTuningInfo(string Name, string Description, Type OptionsType)
{
    internal Func<FineTuningOptions, EncoderConfig, FineTuningOptions> Prepare { get; init; } = null!;
    internal Action<FineTuningOptions, EncoderConfig> Validate { get; init; } = null!;
    internal Action<SequenceModel, FineTuningOptions, bool> Restructure { get; init; } = null!;
    internal Func<ModelParameter, FineTuningOptions, bool> Trains { get; init; } = null!;
    internal Func<SequenceModel, FineTuningOptions, string?> Finish { get; init; } = null!;
    internal Func<SequenceModel, FineTuningOptions, string?> Describe { get; init; } = null!;
}

/// <summary>Outcome of <see cref="FineTuningRegistry.Apply"/>.</summary>
/// <param name="Method">Registry name of the method.</param>
/// <param name="TrainableParameters">Elements of the parameters that train.</param>
/// <param name="TotalParameters">Elements of all parameters (after the method's structure changes).</param>
/// <param name="Details">What the method did, for the log (may be empty).</param>
public sealed record FineTuningSummary(string Method, long TrainableParameters, long TotalParameters, string Details)
{
    /// <summary>One line for MLContext.Log.</summary>
    public override string ToString()
        => $"Fine-tuning '{Method}': {TrainableParameters:N0} of {TotalParameters:N0} parameters trainable " +
           $"({100.0 * TrainableParameters / Math.Max(1, TotalParameters):F2} %){(Details.Length > 0 ? "; " + Details : "")}.";
}

/// <summary>
/// The one registry of fine-tuning methods: a method is chosen by name plus an options record (like the attention
/// mechanisms of <c>MixerRegistry</c>). Applying a method changes the model's structure where needed (LoRA layers, a
/// new head, PSRP modules), sets requires_grad so that only its parameters train, and records the method in the
/// model's configuration, so a saved model rebuilds the same structure when it is loaded.
/// </summary>
public static class FineTuningRegistry
{
    private static readonly ConcurrentDictionary<string, FineTuningInfo> Entries = new(StringComparer.OrdinalIgnoreCase);

    static FineTuningRegistry() => BuiltInFineTuning.RegisterAll();

    /// <summary>Every registered method, sorted by name.</summary>
    public static IReadOnlyList<FineTuningInfo> All => Entries.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();

    /// <summary>Adds a method. Names are unique (case-insensitive).</summary>
    public static void Register<TOptions>(string name, string description, FineTuningMethod<TOptions> method) where TOptions : FineTuningOptions, new()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(method);
        var info = new FineTuningInfo(name, description, typeof(TOptions))
        {
            Prepare = (o, c) => method.Prepare((TOptions)o, c),
            Validate = (o, c) => method.Validate((TOptions)o, c),
            Restructure = (m, o, f) => method.Restructure(m, (TOptions)o, f),
            Trains = (p, o) => method.Trains(p, (TOptions)o),
            Finish = (m, o) => method.Finish(m, (TOptions)o),
            Describe = (m, o) => method.Describe(m, (TOptions)o),
        };
        if (!Entries.TryAdd(name, info)) throw new InvalidOperationException($"A fine-tuning method named '{name}' is already registered.");
    }

    /// <summary>The registry entry for a name, or an error listing the known names.</summary>
    public static FineTuningInfo Get(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (Entries.TryGetValue(name, out var info)) return info;
        throw new ArgumentException($"Unknown fine-tuning method '{name}'. Known methods: {string.Join(", ", All.Select(e => e.Name))}.", nameof(name));
    }

    /// <summary>The default options of a method.</summary>
    public static FineTuningOptions DefaultOptions(string name) => (FineTuningOptions)Activator.CreateInstance(Get(name).OptionsType)!;

    private static readonly JsonSerializerOptions Json = new() { IncludeFields = true, WriteIndented = false };

    /// <summary>Options as JSON (their concrete type's public properties).</summary>
    public static string SerializeOptions(FineTuningOptions options) => JsonSerializer.Serialize(options, options.GetType(), Json);

    /// <summary>Reads options written by <see cref="SerializeOptions"/> for the method <paramref name="name"/>.</summary>
    public static FineTuningOptions DeserializeOptions(string name, string json)
        => (FineTuningOptions?)JsonSerializer.Deserialize(json, Get(name).OptionsType, Json)
           ?? throw new InvalidDataException($"Options for fine-tuning method '{name}' could not be read from '{json}'.");

    /// <summary>Checks a method name and its options' type without a model (estimators call it before reading data).</summary>
    public static void Check(string method, FineTuningOptions? options)
    {
        var info = Get(method);
        if (options is not null && !info.OptionsType.IsInstanceOfType(options))
            throw new ArgumentException($"Fine-tuning method '{info.Name}' takes options of type {info.OptionsType.Name}, not {options.GetType().Name}.", nameof(options));
    }

    /// <summary>
    /// Sets <paramref name="model"/> up for fine-tuning with <paramref name="method"/>: structure changes, requires_grad
    /// on exactly the parameters that train, and the method recorded in <see cref="SequenceModel.Config"/>. Call it
    /// after the initial weights are loaded and before the optimizer is built (it takes only trainable parameters).
    /// </summary>
    public static FineTuningSummary Apply(SequenceModel model, string method, FineTuningOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Check(method, options);
        var info = Get(method);
        options ??= DefaultOptions(info.Name);
        if (SpecOf(model.Config) is { } existing)
            throw new InvalidOperationException($"This model is already set up for fine-tuning with '{existing.Method}'; build a fresh model to use '{info.Name}'.");
        options = info.Prepare(options, model.Config);
        info.Validate(options, model.Config);
        var device = model.parameters().FirstOrDefault()?.device;
        model.ChangeStructure(m => info.Restructure(m, options, false));
        if (device is not null) ModuleDevice.MoveAllTo(model, device); // new adapters and heads join the model's device
        long trainable = 0, total = 0;
        foreach (var p in ModelParameter.All(model))
        {
            bool trains = info.Trains(p, options);
            p.Parameter.requires_grad = trains;
            total += p.Parameter.numel();
            if (trains) trainable += p.Parameter.numel();
        }
        if (trainable == 0) throw new InvalidOperationException($"Fine-tuning method '{info.Name}' with these options leaves no parameter to train.");
        if (!IsFull(info.Name)) model.Config = WithSpec(model.Config, new FineTuningSpec(info.Name, SerializeOptions(options)));
        return new FineTuningSummary(info.Name, trainable, total, info.Describe(model, options) ?? "");
    }

    /// <summary>
    /// A model built from a saved <paramref name="config"/>, with the structure of the fine-tuning method recorded in it
    /// (before its saved weights are loaded). Use it wherever a configuration may come from a fine-tuned model.
    /// </summary>
    public static SequenceModel CreateModel(EncoderConfig config)
    {
        var model = new SequenceModel(config);
        if (SpecOf(config) is { } spec) Restore(model, spec);
        return model;
    }

    /// <summary>Rebuilds the structure recorded in <paramref name="spec"/> on a freshly built model (before its saved weights are loaded).</summary>
    public static void Restore(SequenceModel model, FineTuningSpec spec)
    {
        var info = Get(spec.Method);
        var options = spec.OptionsJson is null ? DefaultOptions(info.Name) : DeserializeOptions(info.Name, spec.OptionsJson);
        model.ChangeStructure(m => info.Restructure(m, options, spec.Finished));
    }

    private const string ExtensionName = "FineTuning";

    /// <summary>The fine-tuning method recorded in <paramref name="config"/> (null = none, i.e. full fine-tuning).</summary>
    public static FineTuningSpec? SpecOf(EncoderConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return config.Extensions?.TryGetValue(ExtensionName, out var e) == true && e.ValueKind == JsonValueKind.Object
            ? e.Deserialize<FineTuningSpec>() : null;
    }

    private static EncoderConfig WithSpec(EncoderConfig config, FineTuningSpec spec)
    {
        var extensions = config.Extensions is null ? new Dictionary<string, JsonElement>() : new Dictionary<string, JsonElement>(config.Extensions);
        extensions[ExtensionName] = JsonSerializer.SerializeToElement(spec);
        return config with { Extensions = extensions };
    }

    /// <summary>Ends fine-tuning after training (e.g. folds LoRA into the weights); returns a line for the log, or null.</summary>
    public static string? Finish(SequenceModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (SpecOf(model.Config) is not { Finished: false } spec) return null;
        var info = Get(spec.Method);
        var options = spec.OptionsJson is null ? DefaultOptions(info.Name) : DeserializeOptions(info.Name, spec.OptionsJson);
        var line = info.Finish(model, options);
        model.Config = WithSpec(model.Config, spec with { Finished = true });
        return line;
    }

    /// <summary>The options a model was set up with (null when it was not, i.e. full fine-tuning).</summary>
    public static FineTuningOptions? OptionsOf(EncoderConfig config)
        => SpecOf(config) is not { } spec ? null
         : spec.OptionsJson is null ? DefaultOptions(spec.Method) : DeserializeOptions(spec.Method, spec.OptionsJson);

    // Full fine-tuning changes nothing, so it leaves no trace in the configuration (saved models stay as before).
    private static bool IsFull(string name) => string.Equals(name, "full", StringComparison.OrdinalIgnoreCase);
}

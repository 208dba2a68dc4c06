using TorchSharp;
using TorchSharp.Modules;
using Microsoft.ML.LinearAttention.Attention;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.Lora;

/// <summary>What <see cref="LoraLayers.Apply"/> did.</summary>
/// <param name="Wrapped">Full names of the linear layers now wrapped by a <see cref="LoraLinear"/>.</param>
/// <param name="NotAdaptable">Targets that matched but are held by a field typed <c>Linear</c>, so they could not be wrapped.</param>
public sealed record LoraApplyResult(IReadOnlyList<string> Wrapped, IReadOnlyList<string> NotAdaptable);

/// <summary>
/// LoRA on any TorchSharp module tree: wrap the targeted <see cref="Linear"/> layers, merge and unmerge the updates,
/// fold them in for good, and save or load the adapters alone (<see cref="LoraAdapterFile"/>).
/// <para>A layer can be wrapped when the field that holds it is declared as <c>nn.Module&lt;Tensor, Tensor&gt;</c>
/// (TorchSharp's <c>Linear</c> is sealed): the projections every mechanism declares (<c>TokenMixer.LoraTargets</c>,
/// the default targets) and every encoder block's <c>ffn_in</c>/<c>ffn_out</c>.</para>
/// </summary>
public static class LoraLayers
{
    /// <summary>
    /// Wraps every matching linear layer of <paramref name="model"/> (frozen W, trainable A and B) and returns their
    /// names. Throws when nothing matches. Call it after the base weights are loaded; it leaves the requires_grad of
    /// other parameters alone.
    /// </summary>
    public static LoraApplyResult Apply(nn.Module model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var isTarget = Targets(model, options);
        var candidates = model.named_modules().Where(m => m.module is Linear && m.name.Length > 0 && isTarget(m.name)).Select(m => m.name).ToList();
        var existing = Layers(model).Select(l => l.Name).Where(isTarget).ToList();
        if (existing.Count > 0)
            throw new InvalidOperationException($"LoRA is already applied to {string.Join(", ", existing.Take(4))}{(existing.Count > 4 ? ", …" : "")}; apply it once per model.");
        var wrapped = new List<string>();
        var notAdaptable = new List<string>();
        foreach (var name in candidates)
        {
            if (!ModuleSurgery.CanReplace(model, name, typeof(LoraLinear))) { notAdaptable.Add(name); continue; }
            var linear = (Linear)ModuleSurgery.Find(model, name);
            ModuleSurgery.Replace(model, name, new LoraLinear(linear, options.Rank, options.Alpha, options.Dropout));
            wrapped.Add(name);
        }
        if (wrapped.Count == 0)
        {
            var linears = model.named_modules().Where(m => m.module is Linear && m.name.Length > 0).Select(m => m.name).ToList();
            string what = options.TargetPattern is { Length: > 0 } p ? $"pattern '{p}'"
                : options.Targets is { } t ? $"targets {string.Join(", ", t)}" : "(the mechanisms' declared projections)";
            throw new ArgumentException(notAdaptable.Count > 0
                ? $"LoRA {what} matched only layers it cannot wrap ({string.Join(", ", notAdaptable.Take(6))}): they are held in fields typed Linear. " +
                  "The projections each mechanism declares (the default targets) and the FFN layers (ffn_in, ffn_out) can be adapted."
                : $"LoRA {what} matched no linear layer. Linear layers of this model: {string.Join(", ", linears.Take(12))}{(linears.Count > 12 ? ", …" : "")}.");
        }
        return new LoraApplyResult(wrapped, notAdaptable);
    }

    /// <summary>
    /// Which full module names LoRA adapts: the explicit <see cref="LoraOptions.Targets"/> / pattern, else the
    /// projections each token mixer of <paramref name="model"/> declares (<see cref="TokenMixer.LoraTargets"/>).
    /// </summary>
    public static Func<string, bool> Targets(nn.Module model, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.HasExplicitTargets) return options.IsTarget;
        var declared = new HashSet<string>(StringComparer.Ordinal);
        if (model is TokenMixer self) declared.UnionWith(self.LoraTargets);   // named_modules() leaves the root out
        foreach (var (name, module) in model.named_modules())
            if (module is TokenMixer mixer)
                foreach (var target in mixer.LoraTargets) declared.Add(name.Length > 0 ? name + "." + target : target);
        return declared.Contains;
    }

    /// <summary>Every LoRA layer of <paramref name="model"/> with its full name.</summary>
    public static IReadOnlyList<(string Name, LoraLinear Layer)> Layers(nn.Module model)
        => model.named_modules().Where(m => m.module is LoraLinear).Select(m => (m.name, (LoraLinear)m.module)).ToList();

    /// <summary>Folds every update into its base weight (inference then costs what the plain model costs).</summary>
    public static void Merge(nn.Module model)
    {
        foreach (var (_, layer) in Layers(model)) layer.Merge();
    }

    /// <summary>Takes every update back out of its base weight.</summary>
    public static void Unmerge(nn.Module model)
    {
        foreach (var (_, layer) in Layers(model)) layer.Unmerge();
    }

    /// <summary>Replaces every LoRA layer by a plain linear layer with the update folded in; returns how many.</summary>
    public static int MergeAndUnload(nn.Module model)
    {
        var layers = Layers(model);
        foreach (var (name, layer) in layers) ModuleSurgery.Replace(model, name, layer.ToMergedLinear());
        return layers.Count;
    }

    /// <summary>The adapter tensors by state name (<c>{layer}.lora_A</c>, <c>{layer}.lora_B</c>).</summary>
    public static IReadOnlyDictionary<string, Tensor> AdapterTensors(nn.Module model)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, layer) in Layers(model))
        {
            result[name + ".lora_A"] = layer.LoraA;
            result[name + ".lora_B"] = layer.LoraB;
        }
        return result;
    }
}

using System.Text.RegularExpressions;

namespace Microsoft.ML.LinearAttention.FineTuning.Lora;

/// <summary>
/// Options of LoRA (Hu et al. 2021; defaults of LoLCATs' stage 2 and Hugging Face PEFT): every targeted linear layer
/// keeps its weight W frozen and learns a low-rank update, y = W·x + b + (α/r)·B·A·dropout(x), with A [r, in]
/// Kaiming-uniform and B [out, r] zero, so the model is unchanged at the start.
/// </summary>
public sealed record LoraOptions : FineTuningOptions
{
    /// <summary>
    /// Module names to adapt: a module matches when its full name (e.g. <c>blocks.0.mixer.q_proj</c>) equals a target
    /// or ends with "." + target. Null (default): the projections every mechanism declares
    /// (<c>TokenMixer.LoraTargets</c>: q_proj, k_proj, v_proj, o_proj of the ProjectedMixer family, as LoLCATs, and
    /// each other mechanism's own, e.g. qkv and proj); list them with ffn_in, ffn_out to adapt the FFNs as well.
    /// </summary>
    public string[]? Targets { get; init; }
    /// <summary>Optional regular expression on the full module name; when set it replaces <see cref="Targets"/>.</summary>
    public string? TargetPattern { get; init; }
    /// <summary>Rank r of the update.</summary>
    public int Rank { get; init; } = 8;
    /// <summary>α; the update is scaled by α / r.</summary>
    public double Alpha { get; init; } = 16;
    /// <summary>Dropout on the adapter's input only (PEFT <c>lora_dropout</c>; LoLCATs: 0).</summary>
    public double Dropout { get; init; }
    /// <summary>Train the task head as well (PEFT <c>modules_to_save</c>; needed when the head is new).</summary>
    public bool TrainHead { get; init; } = true;
    /// <summary>Train every bias as well (PEFT <c>bias = "all"</c>); default off (<c>"none"</c>).</summary>
    public bool TrainBiases { get; init; }
    /// <summary>
    /// After training, fold B·A into W and drop the adapters, so the fitted model is a plain model with no inference
    /// overhead (default). Off: the adapters stay separate in the fitted and saved model (adapter export stays possible).
    /// </summary>
    public bool MergeAfterTraining { get; init; } = true;

    /// <summary>The factor α / r.</summary>
    public double Scale => Alpha / Rank;

    /// <summary>True when <see cref="Targets"/> or <see cref="TargetPattern"/> names the layers (else the mechanisms' declared projections are meant).</summary>
    public bool HasExplicitTargets => TargetPattern is { Length: > 0 } || Targets is not null;

    /// <summary>True when the module named <paramref name="fullName"/> is an explicit target (<see cref="HasExplicitTargets"/>).</summary>
    public bool IsTarget(string fullName)
    {
        if (TargetPattern is { Length: > 0 } pattern) return Regex.IsMatch(fullName, "^(?:" + pattern + ")$");
        foreach (var t in Targets ?? Array.Empty<string>())
            if (fullName == t || fullName.EndsWith("." + t, StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>Throws a clear error for an out-of-range setting.</summary>
    public void Validate()
    {
        if (Rank <= 0) throw new ArgumentOutOfRangeException(nameof(Rank), Rank, "LoRA Rank must be at least 1 (8 is the usual default).");
        if (!(Alpha > 0)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "LoRA Alpha must be positive (16 is the usual default; the update is scaled by Alpha / Rank).");
        if (Dropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "LoRA Dropout must lie in [0, 1).");
        if (TargetPattern is { Length: > 0 } p)
        {
            try { _ = new Regex(p); }
            catch (ArgumentException e) { throw new ArgumentException($"LoRA TargetPattern '{p}' is not a valid regular expression: {e.Message}", nameof(TargetPattern), e); }
        }
        else if (Targets is not null && (Targets.Length == 0 || Targets.Any(string.IsNullOrWhiteSpace)))
            throw new ArgumentException("LoRA needs at least one target module name (e.g. q_proj, v_proj) or a TargetPattern.", nameof(Targets));
    }
}

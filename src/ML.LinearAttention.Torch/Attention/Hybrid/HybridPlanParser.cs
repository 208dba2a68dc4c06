using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using Microsoft.ML.LinearAttention.Attention.Softmax;

namespace Microsoft.ML.LinearAttention.Attention.Hybrid;

/// <summary>Text form of <see cref="HybridPlan"/>: parsing with errors that quote the input, and canonical formatting.</summary>
internal static class HybridPlanParser
{
    internal const string Examples =
        "Valid examples: 3:1 (softmax at layers 3, 7, 11, …: the last layer of every group of 4); softmax@0,-1 (first " +
        "and last layer); 2,5 (softmax at layers 2 and 5); swa:512@0,2 (sliding window 512 at layers 0 and 2); " +
        "3:1;swa:512@0 (clauses apply in order, later ones override); hedgehog{\"FeatureDim\":32}@1; none.";

    // Strict: a misspelt option name is an error, not a silent default.
    private static readonly JsonSerializerOptions StrictJson = new()
    {
        IncludeFields = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    internal static HybridPlan Parse(string spec)
    {
        if (spec is null) throw new FormatException("A hybrid plan cannot be null; use \"none\" for no change. " + Examples);
        var text = spec.Trim();
        if (text.Length == 0 || text.Equals("none", StringComparison.OrdinalIgnoreCase)) return HybridPlan.None;
        var plan = HybridPlan.None;
        foreach (var raw in SplitTopLevel(text, ';'))
        {
            var clause = raw.Trim();
            if (clause.Length == 0) Fail(spec, "it has an empty clause (two ';' in a row, or a ';' at an end)");
            try
            {
                plan = ParseClause(spec, clause, plan);
            }
            catch (ArgumentException e)
            {
                Fail(spec, $"in '{clause}': {FirstSentence(e.Message)}");
            }
        }
        return plan;
    }

    private static HybridPlan ParseClause(string spec, string clause, HybridPlan plan)
    {
        if (!Balanced(clause)) Fail(spec, $"the JSON braces or quotes in '{clause}' are not balanced");
        int at = LastTopLevel(clause, '@');
        if (at < 0)
        {
            var parts = clause.Split(':');
            if (parts.Length == 2 && TryInt(parts[0], out int linear) && TryInt(parts[1], out int full))
            {
                if (linear < 0 || full < 1)
                    Fail(spec, $"ratio '{clause}' needs linear ≥ 0 and full ≥ 1 layers per group");
                return plan.ThenRatio(linear, full);
            }
            if (TryLayers(clause, out var softmaxLayers)) return plan.ThenSoftmaxAt(softmaxLayers);
            Fail(spec, $"'{clause}' is neither a ratio (L:F), a list of layer indices, nor mechanism@layers");
        }
        var mechanism = clause[..at].Trim();
        var layerText = clause[(at + 1)..].Trim();
        if (!TryLayers(layerText, out var layers))
            Fail(spec, $"'{layerText}' in '{clause}' is not a comma-separated list of layer indices (negative = from the end)");
        var (name, options) = ParseMechanism(spec, clause, mechanism);
        return plan.ThenMechanismAt(name, options, layers);
    }

    private static (string Name, MixerOptions? Options) ParseMechanism(string spec, string clause, string mechanism)
    {
        int brace = mechanism.IndexOf('{');
        string name = (brace >= 0 ? mechanism[..brace] : mechanism).Trim();
        string? argument = null;
        int colon = name.IndexOf(':');
        if (colon >= 0)
        {
            argument = name[(colon + 1)..].Trim();
            name = name[..colon].Trim();
        }
        if (name.Equals("full", StringComparison.OrdinalIgnoreCase)) name = "softmax";
        if (name.Length == 0) Fail(spec, $"'{clause}' names no mechanism before '@'");
        if (!MixerRegistry.Contains(name))
            Fail(spec, $"unknown mechanism '{name}' in '{clause}' (known: {string.Join(", ", MixerRegistry.All.Select(e => e.Name))})");
        var info = MixerRegistry.Get(name);
        if (argument is not null)
        {
            if (!info.Name.Equals("swa", StringComparison.OrdinalIgnoreCase))
                Fail(spec, $"only swa takes a ':window' argument ('{clause}'); give other options as JSON, e.g. {info.Name}{{...}}@0");
            if (brace >= 0) Fail(spec, $"give the swa window either as ':window' or as JSON, not both ('{clause}')");
            if (!TryInt(argument, out int window) || window <= 0)
                Fail(spec, $"the swa window '{argument}' in '{clause}' must be a positive integer, e.g. swa:512@0");
            return (info.Name, new SlidingWindowOptions { Window = window });
        }
        if (brace < 0) return (info.Name, null);
        var json = mechanism[brace..].Trim();
        try
        {
            var options = (MixerOptions?)JsonSerializer.Deserialize(json, info.OptionsType, StrictJson);
            if (options is null) Fail(spec, $"the options '{json}' of '{info.Name}' are empty");
            return (info.Name, options);
        }
        catch (JsonException e)
        {
            Fail(spec, $"the options '{json}' of '{info.Name}' are not valid {info.OptionsType.Name} JSON ({FirstSentence(e.Message)})");
            throw; // unreachable
        }
    }

    /// <summary>Canonical text of one mechanism: "softmax", "swa:512", "name" (defaults) or "name{json}".</summary>
    internal static string FormatMechanism(string name, MixerOptions options)
    {
        if (options is SlidingWindowOptions swa && swa == new SlidingWindowOptions { Window = swa.Window })
            return $"{name}:{swa.Window.ToString(CultureInfo.InvariantCulture)}";
        if (options.Equals(MixerRegistry.DefaultOptions(name))) return name;
        return name + MixerRegistry.SerializeOptions(options);
    }

    private static bool TryInt(string text, out int value)
        => int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);

    private static bool TryLayers(string text, out int[] layers)
    {
        var parts = text.Split(',');
        layers = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!TryInt(parts[i], out layers[i])) return false;
        return parts.Length > 0;
    }

    /// <summary>Splits on <paramref name="separator"/> outside JSON braces and strings.</summary>
    private static IEnumerable<string> SplitTopLevel(string text, char separator)
    {
        int start = 0;
        foreach (int i in TopLevel(text, separator))
        {
            yield return text[start..i];
            start = i + 1;
        }
        yield return text[start..];
    }

    private static bool Balanced(string text)
    {
        int depth = 0;
        bool inString = false;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (inString)
            {
                if (ch == '\\') i++;
                else if (ch == '"') inString = false;
            }
            else if (ch == '"') inString = true;
            else if (ch == '{') depth++;
            else if (ch == '}' && --depth < 0) return false;
        }
        return depth == 0 && !inString;
    }

    private static int LastTopLevel(string text, char c) => TopLevel(text, c).DefaultIfEmpty(-1).Last();

    private static IEnumerable<int> TopLevel(string text, char c)
    {
        int depth = 0;
        bool inString = false;
        for (int i = 0; i < text.Length; i++)
        {
            char ch = text[i];
            if (inString)
            {
                if (ch == '\\') i++;
                else if (ch == '"') inString = false;
                continue;
            }
            if (ch == '"') inString = true;
            else if (ch == '{') depth++;
            else if (ch == '}') depth--;
            else if (ch == c && depth == 0) yield return i;
        }
    }

    private static string FirstSentence(string message)
    {
        int end = message.IndexOf(" (Parameter", StringComparison.Ordinal);
        return (end >= 0 ? message[..end] : message).TrimEnd('.', ' ');
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Fail(string spec, string problem)
        => throw new FormatException($"Invalid hybrid plan '{spec}': {problem}. {Examples}");
}

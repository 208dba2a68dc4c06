using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Persistence;

namespace Microsoft.ML.LinearAttention.Samples.Reporting;

/// <summary>
/// The model card written next to a saved model, as JSON (for programs) and markdown (for people): what was trained on
/// which data with which options, how well it did, how long it took, and the versions of everything involved.
/// </summary>
public sealed class ModelCard
{
    public string Model { get; set; } = "";
    public string CreatedUtc { get; set; } = DateTime.UtcNow.ToString("u", CultureInfo.InvariantCulture);
    public string Task { get; set; } = "";
    public string TaskReason { get; set; } = "";
    public CardData Data { get; set; } = new();
    public SortedDictionary<string, JsonNode?> Options { get; set; } = new();
    public CardTraining Training { get; set; } = new();
    public string MetricsOn { get; set; } = "";
    public SortedDictionary<string, double> Metrics { get; set; } = new();
    public SortedDictionary<string, double> TimingsSeconds { get; set; } = new();
    public SortedDictionary<string, string> Versions { get; set; } = Collect();
    public SortedDictionary<string, string> Files { get; set; } = new();

    public sealed class CardData
    {
        public string Path { get; set; } = "";
        public string Separator { get; set; } = "";
        public string[] TextColumns { get; set; } = Array.Empty<string>();
        public string[] FeatureColumns { get; set; } = Array.Empty<string>();
        public string LabelColumn { get; set; } = "";
        public long TrainRows { get; set; }
        public long ValidationRows { get; set; }
        public string ValidationSource { get; set; } = "";
        public string[]? Classes { get; set; }
        /// <summary>Image models: the column of image paths (null for a folder per class).</summary>
        public string? ImageColumn { get; set; }
        /// <summary>Image models: the folder relative image paths were read from.</summary>
        public string? ImageRoot { get; set; }
    }

    public sealed class CardTraining
    {
        public int Epochs { get; set; }
        public long Steps { get; set; }
        public double FinalTrainLoss { get; set; }
        public double? BestValidationMetric { get; set; }
        public int? BestEpoch { get; set; }
        public bool StoppedEarly { get; set; }
        public long Parameters { get; set; }
        public string Device { get; set; } = "cpu";
        /// <summary>The checkpoint step a resumed run started from (null: one uninterrupted run).</summary>
        public long? ResumedFromStep { get; set; }
        /// <summary>The validation metric at the end of each epoch, the epochs before a resume included.</summary>
        public EpochMetric[] ValidationHistory { get; set; } = Array.Empty<EpochMetric>();
    }

    /// <summary>One epoch's validation metric.</summary>
    public sealed record EpochMetric(int Epoch, double Metric);

    // A metric can be infinite (log-loss of a confident miss) or NaN; the card says so instead of failing to save.
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The public settings of an options object (numbers, text, enums, lists of text); data views and callbacks are left out.</summary>
    public static SortedDictionary<string, JsonNode?> DescribeOptions(object options)
    {
        var result = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var f in options.GetType().GetFields(BindingFlags.Public | BindingFlags.Instance))
        {
            var v = f.GetValue(options);
            var t = Nullable.GetUnderlyingType(f.FieldType) ?? f.FieldType;
            if (t.IsPrimitive || t == typeof(string) || t == typeof(decimal)) result[f.Name] = JsonValue.Create(v);
            else if (t.IsEnum) result[f.Name] = v?.ToString();
            else if (t == typeof(string[])) result[f.Name] = v is string[] a ? new JsonArray(a.Select(s => (JsonNode?)s).ToArray()) : null;
        }
        if (options is not LinearAttentionOptions { Tokenizer: var tok }) return result; // image options have no tokenizer
        result["Tokenizer"] = $"{tok.Kind}, {(tok.VocabularyFile is null ? "embedded bert-base-uncased vocabulary" : tok.VocabularyFile)}{(tok.LowerCase ? ", lower case" : "")}";
        return result;
    }

    private static SortedDictionary<string, string> Collect()
    {
        static string Of(Assembly a) => (a.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? a.GetName().Version?.ToString() ?? "?").Split('+')[0];
        return new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["ML.LinearAttention"] = Of(typeof(LinearAttentionModel).Assembly),
            ["Microsoft.ML"] = Of(typeof(MLContext).Assembly),
            ["TorchSharp"] = Of(typeof(TorchSharp.torch).Assembly),
            [".NET"] = RuntimeInformation.FrameworkDescription,
            ["OS"] = RuntimeInformation.OSDescription,
            ["Machine"] = $"{Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}",
        };
    }

    /// <summary>The JSON form.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads a card written by <see cref="ToJson"/>.</summary>
    public static ModelCard FromJson(string json) => JsonSerializer.Deserialize<ModelCard>(json, Json) ?? throw new InvalidDataException("The model card is empty.");

    /// <summary>The card file names next to <paramref name="modelPath"/>.</summary>
    public static (string Json, string Markdown) PathsFor(string modelPath)
    {
        var stem = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(modelPath))!, System.IO.Path.GetFileNameWithoutExtension(modelPath));
        return (stem + ".card.json", stem + ".card.md");
    }

    /// <summary>The markdown form.</summary>
    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine($"# Model card: {Model}");
        sb.AppendLine();
        sb.AppendLine($"{Task} with ML.LinearAttention, created {CreatedUtc} ({TaskReason}).");
        sb.AppendLine();
        sb.AppendLine("## Data");
        sb.AppendLine();
        sb.AppendLine("| | |");
        sb.AppendLine("| --- | --- |");
        sb.AppendLine(Data.Separator.Length == 0 ? $"| folder | `{Data.Path}` |" : $"| file | `{Data.Path}` (separator {Data.Separator}) |");
        if (Data.TextColumns.Length > 0 || Data.ImageColumn is null && Data.ImageRoot is null)
        {
            sb.AppendLine($"| text columns | {string.Join(", ", Data.TextColumns)} |");
            sb.AppendLine($"| numeric feature columns | {(Data.FeatureColumns.Length == 0 ? "none" : string.Join(", ", Data.FeatureColumns))} |");
        }
        else sb.AppendLine($"| images | {(Data.ImageColumn is null ? "a folder per class" : $"paths in column {Data.ImageColumn}, read from `{Data.ImageRoot}`")} |");
        sb.AppendLine($"| label | {Data.LabelColumn}{(Data.Classes is { } c ? $" ({c.Length} classes: {string.Join(", ", c)})" : "")} |");
        sb.AppendLine($"| rows | {Data.TrainRows.ToString("N0", inv)} training, {Data.ValidationRows.ToString("N0", inv)} validation ({Data.ValidationSource}) |");
        sb.AppendLine();
        sb.AppendLine($"## Metrics ({MetricsOn})");
        sb.AppendLine();
        sb.AppendLine("| metric | value |");
        sb.AppendLine("| --- | ---: |");
        foreach (var (k, v) in Metrics) sb.AppendLine($"| {k} | {v.ToString("F4", inv)} |");
        sb.AppendLine();
        sb.AppendLine("## Training");
        sb.AppendLine();
        sb.AppendLine($"{Training.Epochs} epoch(s), {Training.Steps.ToString("N0", inv)} steps, final training loss {Training.FinalTrainLoss.ToString("F4", inv)}" +
                      (Training.BestValidationMetric is { } b ? $", best validation {b.ToString("F4", inv)} at epoch {Training.BestEpoch}" : "") +
                      (Training.StoppedEarly ? ", stopped early" : "") + $"; {Training.Parameters.ToString("N0", inv)} parameters on {Training.Device}" +
                      (Training.ResumedFromStep is { } r ? $"; resumed from the checkpoint of step {r.ToString("N0", inv)}" : "") + ".");
        sb.AppendLine();
        if (Training.ValidationHistory.Length > 0)
        {
            sb.AppendLine("| epoch | validation |");
            sb.AppendLine("| ---: | ---: |");
            foreach (var v in Training.ValidationHistory) sb.AppendLine($"| {v.Epoch} | {v.Metric.ToString("F4", inv)} |");
            sb.AppendLine();
        }
        sb.AppendLine("| timing | seconds |");
        sb.AppendLine("| --- | ---: |");
        foreach (var (k, v) in TimingsSeconds) sb.AppendLine($"| {k} | {v.ToString("F1", inv)} |");
        sb.AppendLine();
        foreach (var (k, v) in Files) sb.AppendLine($"![{k}]({v})");
        if (Files.Count > 0) sb.AppendLine();
        sb.AppendLine("## Options");
        sb.AppendLine();
        sb.AppendLine("| option | value |");
        sb.AppendLine("| --- | --- |");
        foreach (var (k, v) in Options) sb.AppendLine($"| {k} | {v?.ToJsonString() ?? "null"} |");
        sb.AppendLine();
        sb.AppendLine("## Versions");
        sb.AppendLine();
        foreach (var (k, v) in Versions) sb.AppendLine($"- {k}: {v}");
        return sb.ToString();
    }
}

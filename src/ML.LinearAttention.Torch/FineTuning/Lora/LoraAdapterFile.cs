using System.Text;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Pretrained;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.FineTuning.Lora;

/// <summary>
/// Adapter-only persistence, in the layout of Hugging Face PEFT: a folder with <c>adapter_config.json</c> (the
/// <see cref="LoraOptions"/> and the wrapped layer names) and <c>adapter_model.safetensors</c> (F32 tensors
/// <c>{layer}.lora_A</c> [r, in] and <c>{layer}.lora_B</c> [out, r]). A few kilobytes to megabytes instead of the whole
/// model; <see cref="Load"/> restores them onto a fresh copy of the same base model.
/// </summary>
public static class LoraAdapterFile
{
    /// <summary>File name of the configuration.</summary>
    public const string ConfigFileName = "adapter_config.json";
    /// <summary>File name of the tensors.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    private sealed record AdapterConfig(string Format, LoraOptions Options, string[] Layers);

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>Writes the adapters of <paramref name="model"/> (trained with <paramref name="options"/>) to <paramref name="directory"/>.</summary>
    public static void Save(nn.Module model, LoraOptions options, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        var layers = LoraLayers.Layers(model);
        if (layers.Count == 0) throw new InvalidOperationException("The model has no LoRA layers to save (was the adapter merged and unloaded?).");
        if (layers.Any(l => l.Layer.Merged))
            throw new InvalidOperationException("Unmerge the LoRA layers (LoraLayers.Unmerge) before saving the adapter: merged weights would be counted twice when it is loaded.");
        Directory.CreateDirectory(directory);
        var config = new AdapterConfig("ML.LinearAttention LoRA adapter v1", options, layers.Select(l => l.Name).ToArray());
        File.WriteAllText(Path.Combine(directory, ConfigFileName), JsonSerializer.Serialize(config, Json));
        WriteSafeTensors(Path.Combine(directory, WeightsFileName), LoraLayers.AdapterTensors(model));
    }

    /// <summary>
    /// Loads an adapter written by <see cref="Save"/> into <paramref name="model"/>, wrapping its layers first when it
    /// has none; returns the adapter's options. Shapes and layer names must match the base model.
    /// </summary>
    public static LoraOptions Load(nn.Module model, string directory)
    {
        ArgumentNullException.ThrowIfNull(model);
        var configPath = Path.Combine(directory, ConfigFileName);
        var weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(configPath) || !File.Exists(weightsPath))
            throw new FileNotFoundException($"'{directory}' is not a LoRA adapter folder: it needs {ConfigFileName} and {WeightsFileName}.", configPath);
        var config = JsonSerializer.Deserialize<AdapterConfig>(File.ReadAllText(configPath), Json)
            ?? throw new InvalidDataException($"'{configPath}' is empty.");
        if (LoraLayers.Layers(model).Count == 0) LoraLayers.Apply(model, config.Options);
        var layers = LoraLayers.Layers(model).ToDictionary(l => l.Name, l => l.Layer);
        var missing = config.Layers.Where(n => !layers.ContainsKey(n)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"The adapter in '{directory}' adapts layers this model does not have as LoRA layers: {string.Join(", ", missing.Take(6))}. Load it onto the base model it was trained on.");
        var tensors = SafeTensors.ReadAll(weightsPath).ToDictionary(t => t.Name);
        using var _ = no_grad();
        foreach (var name in config.Layers)
        {
            var layer = layers[name];
            if (layer.Merged) throw new InvalidOperationException($"LoRA layer '{name}' is merged; unmerge it before loading an adapter.");
            Copy(tensors, name + ".lora_A", layer.LoraA, directory);
            Copy(tensors, name + ".lora_B", layer.LoraB, directory);
        }
        return config.Options;
    }

    private static void Copy(IReadOnlyDictionary<string, WeightTensor> tensors, string name, Tensor target, string directory)
    {
        if (!tensors.TryGetValue(name, out var t)) throw new InvalidDataException($"The adapter in '{directory}' lacks tensor '{name}'.");
        if (!t.Shape.SequenceEqual(target.shape))
            throw new InvalidDataException($"Adapter tensor '{name}' has shape {t.ShapeText} but the model needs [{string.Join(", ", target.shape)}] (a different rank or base model).");
        using var source = tensor(t.Data, t.Shape);
        target.copy_(source);
    }

    /// <summary>Writes float32 tensors in the safetensors format (8-byte header length, JSON header, raw data).</summary>
    internal static void WriteSafeTensors(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var header = new Dictionary<string, object>();
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var cpu = t.detach().to(ScalarType.Float32).cpu().contiguous();
            var bytes = new byte[cpu.numel() * 4];
            Buffer.BlockCopy(cpu.data<float>().ToArray(), 0, bytes, 0, bytes.Length); // little-endian on every .NET target
            header[name] = new { dtype = "F32", shape = t.shape, data_offsets = new[] { offset, offset + bytes.Length } };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        var temp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = File.Create(temp))
            using (var w = new BinaryWriter(stream))
            {
                w.Write((ulong)(json.Length + pad));
                w.Write(json);
                for (int i = 0; i < pad; i++) w.Write((byte)' ');
                foreach (var b in blobs) w.Write(b);
            }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}

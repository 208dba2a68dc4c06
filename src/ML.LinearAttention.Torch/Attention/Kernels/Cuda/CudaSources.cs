using System.Reflection;
using System.Text.Json;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>One NVRTC program of kernels.json: its root source, the headers it reaches through #include, and the defines fixed for it.</summary>
/// <param name="Name">The module's name in the manifest.</param>
/// <param name="SourceName">File name of the root source (the program's name; NVRTC's log cites it).</param>
/// <param name="Source">Text of the root source.</param>
/// <param name="Headers">Every header the module includes, by the name its #include lines use, with its text.</param>
/// <param name="Defines">Defines given as -D options to every compilation of the module (NAME=VALUE).</param>
internal sealed record CudaModuleSource(string Name, string SourceName, string Source,
    IReadOnlyList<(string Name, string Text)> Headers, IReadOnlyList<string> Defines);

/// <summary>
/// The CUDA C of the fused kernels: the .cu and .cuh files beside their launchers, embedded in this assembly with
/// kernels.json, the manifest of which files form which NVRTC module (tests/FusedKernelEmulator/run.sh reads the same
/// manifest from the source tree).
/// </summary>
internal static class CudaSources
{
    /// <summary>Prefix of the resources' logical names (ML.LinearAttention.Torch.csproj).</summary>
    internal const string ResourcePrefix = "ML.LinearAttention.Cuda.";

    /// <summary>Module names in the manifest (also the emulator's order).</summary>
    public const string LinearAttention = "linear_attention", CausalLinearAttention = "causal_linear_attention",
        HedgehogMap = "hedgehog_map", HedgehogProjection = "hedgehog_projection", HedgehogAttention = "hedgehog_attention",
        DecayLinearAttention = "decay_linear_attention",
        MultiTensorAdamW = "multi_tensor_adamw", RmsNorm = "rms_norm", Rotary = "rotary", DeltaRuleState = "delta_rule_state";

    private static readonly Lazy<IReadOnlyDictionary<string, CudaModuleSource>> Modules = new(Load);

    /// <summary>Every module of the manifest, by name.</summary>
    public static IReadOnlyDictionary<string, CudaModuleSource> All => Modules.Value;

    /// <summary>The module <paramref name="name"/>; throws when the manifest has none of that name.</summary>
    public static CudaModuleSource Module(string name)
        => All.TryGetValue(name, out var module) ? module
            : throw new ArgumentException($"kernels.json has no CUDA module '{name}' (it has {string.Join(", ", All.Keys)}).", nameof(name));

    /// <summary>Text of the embedded file <paramref name="fileName"/> (kernels.json, a .cu or a .cuh).</summary>
    public static string Read(string fileName)
    {
        using var stream = typeof(CudaSources).Assembly.GetManifestResourceStream(ResourcePrefix + fileName)
            ?? throw new InvalidOperationException($"The CUDA source '{fileName}' is not embedded in {typeof(CudaSources).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>File names of every embedded CUDA file (.cu, .cuh), for the manifest's consistency test.</summary>
    internal static IEnumerable<string> EmbeddedFiles()
        => typeof(CudaSources).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && (n.EndsWith(".cu", StringComparison.Ordinal) || n.EndsWith(".cuh", StringComparison.Ordinal)))
            .Select(n => n[ResourcePrefix.Length..]);

    private static IReadOnlyDictionary<string, CudaModuleSource> Load()
    {
        using var manifest = JsonDocument.Parse(Read("kernels.json"));
        var modules = new Dictionary<string, CudaModuleSource>(StringComparer.Ordinal);
        foreach (var m in manifest.RootElement.GetProperty("modules").EnumerateArray())
        {
            string name = m.GetProperty("name").GetString()!, source = m.GetProperty("source").GetString()!;
            var headers = m.GetProperty("headers").EnumerateArray().Select(h => h.GetString()!).Select(h => (h, Read(h))).ToArray();
            var defines = m.GetProperty("defines").EnumerateArray().Select(d => d.GetString()!).ToArray();
            modules.Add(name, new CudaModuleSource(name, source, Read(source), headers, defines));
        }
        return modules;
    }
}

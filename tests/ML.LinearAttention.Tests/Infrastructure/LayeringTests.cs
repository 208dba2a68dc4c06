using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.Tests.Build;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>
/// The folders of the two library assemblies form layers, written once in docs/architecture.md; a file may import
/// its own layer and lower ones only. Imports are <c>using</c> directives (plain, static and aliases) and qualified
/// names in code (<c>Microsoft.ML.LinearAttention.X.</c> or, inside the library's namespaces, <c>X.Type</c>).
/// </summary>
public sealed partial class LayeringTests
{
    private const string Root = "Microsoft.ML.LinearAttention.";

    [Fact]
    public void NoFolderImportsALayerAboveItsOwn()
    {
        string repo = PackageConsumerTests.RepoRoot();
        var layers = Layers.Read(File.ReadAllText(Path.Combine(repo, "docs", "architecture.md")));
        Assert.Equal(new[] { "ML.LinearAttention.Torch", "ML.LinearAttention" }, layers.Assemblies);
        var sources = layers.Assemblies.SelectMany(a => SourcesOf(Path.Combine(repo, "src", a), a)).ToList();
        Assert.True(sources.Count > 200, $"Found only {sources.Count} source files under src/.");

        var unlisted = sources.Where(s => layers.IndexOf(s.Assembly, s.Folder) < 0).Select(s => $"{s.Assembly}/{s.Folder}").Distinct().ToList();
        Assert.True(unlisted.Count == 0, "Folders missing from docs/architecture.md's layer list: " + string.Join(", ", unlisted));

        var violations = Check(layers, sources);
        Assert.True(violations.Count == 0, "Upward imports (a folder may use only its own and lower layers):\n" + string.Join("\n", violations));
    }

    [Fact]
    public void TheCoreAssemblyReferencesNoMLNet()
    {
        var core = typeof(Microsoft.ML.LinearAttention.Attention.MixerRegistry).Assembly;
        Assert.Equal("ML.LinearAttention.Torch", core.GetName().Name);
        var mlnet = core.GetReferencedAssemblies().Select(a => a.Name!)
            .Where(n => n.StartsWith("Microsoft.ML", StringComparison.Ordinal) && n != "Microsoft.ML.Tokenizers").ToList();
        Assert.True(mlnet.Count == 0, "ML.LinearAttention.Torch must not reference ML.NET; it references " + string.Join(", ", mlnet));
        Assert.Contains(core.GetReferencedAssemblies(), a => a.Name == "TorchSharp");
    }

    [Fact]
    public void APlantedUpwardImportIsReported()
    {
        var layers = Layers.Read("```text\nCore: Runtime, Encoder, FineTuning\nTop: Runtime, Estimators\n```");
        var encoder = new Source("Core", "Encoder", "Encoder/Block.cs",
            "using Microsoft.ML.LinearAttention.Runtime;\nusing Microsoft.ML.LinearAttention.FineTuning.Lora;\nnamespace Microsoft.ML.LinearAttention.Encoder;\nclass Block {}");
        var qualified = new Source("Core", "Runtime", "Runtime/Devices.cs",
            "namespace Microsoft.ML.LinearAttention.Runtime;\n// Encoder.Block in a comment is fine\nclass Devices { object x = new Encoder.Block(); }");
        var fine = new Source("Core", "FineTuning", "FineTuning/Lora.cs",
            "using Microsoft.ML.LinearAttention.Encoder;\nnamespace Microsoft.ML.LinearAttention.FineTuning.Lora;\nclass Lora { string s = \"Estimators.X\"; }");
        var topRuntime = new Source("Top", "Runtime", "Runtime/Policy.cs",
            "using Microsoft.ML.LinearAttention.Runtime;\nnamespace Microsoft.ML.LinearAttention.Runtime;\nclass Policy { Devices d; }");
        var violations = Check(layers, new[] { encoder, qualified, fine, topRuntime, new Source("Core", "Runtime", "Runtime/Devices2.cs", "namespace Microsoft.ML.LinearAttention.Runtime;\nclass Devices2 { Policy p; }") });
        Assert.Contains(violations, v => v.Contains("Encoder/Block.cs") && v.Contains("FineTuning"));
        Assert.Contains(violations, v => v.Contains("Runtime/Devices.cs") && v.Contains("Encoder"));
        Assert.DoesNotContain(violations, v => v.Contains("FineTuning/Lora.cs") || v.Contains("Runtime/Policy.cs"));
        Assert.Equal(2, violations.Count);
    }

    private sealed record Source(string Assembly, string Folder, string Path, string Text)
    {
        public string Code { get; } = StripCommentsAndStrings(Text);
    }

    private sealed record Layers(string[] Assemblies, List<(string Assembly, string Folder)> Order)
    {
        public static Layers Read(string markdown)
        {
            var block = Regex.Match(markdown, "```text\\n(.*?)```", RegexOptions.Singleline);
            if (!block.Success) throw new InvalidOperationException("docs/architecture.md has no ```text block with the layer list.");
            var order = new List<(string, string)>();
            var assemblies = new List<string>();
            foreach (var line in block.Groups[1].Value.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = line.Split(':', 2);
                assemblies.Add(parts[0].Trim());
                order.AddRange(parts[1].Split(',').Select(f => (parts[0].Trim(), f.Trim())));
            }
            return new Layers(assemblies.ToArray(), order);
        }

        public int IndexOf(string assembly, string folder) => Order.IndexOf((assembly, folder));

        /// <summary>Layers a namespace's folder name can mean from <paramref name="assembly"/>: its own assembly's and those below.</summary>
        public IEnumerable<int> Candidates(string assembly, string folder)
        {
            int limit = Array.IndexOf(Assemblies, assembly);
            for (int a = 0; a <= limit; a++)
                if (IndexOf(Assemblies[a], folder) is var i and >= 0) yield return i;
        }
    }

    private static IEnumerable<Source> SourcesOf(string projectDir, string assembly)
        => Directory.EnumerateFiles(projectDir, "*.cs", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(projectDir, f).Replace('\\', '/'))
            .Where(r => !r.StartsWith("bin/") && !r.StartsWith("obj/") && !r.StartsWith("buildTransitive/") && r.Contains('/'))
            .Select(r => new Source(assembly, r[..r.IndexOf('/')], assembly + "/" + r, File.ReadAllText(Path.Combine(projectDir, r))));

    private static List<string> Check(Layers layers, IReadOnlyList<Source> sources)
    {
        // Types each layer declares, to tell which half of a namespace split over both assemblies a file really uses.
        var declared = sources.GroupBy(s => layers.IndexOf(s.Assembly, s.Folder))
            .ToDictionary(g => g.Key, g => g.SelectMany(s => Declaration().Matches(s.Code).Select(m => m.Groups[1].Value)).ToHashSet());
        var folders = layers.Order.Select(o => o.Folder).ToHashSet();
        var violations = new List<string>();
        foreach (var s in sources)
        {
            int own = layers.IndexOf(s.Assembly, s.Folder);
            var identifiers = Identifier().Matches(s.Code).Select(m => m.Value).ToHashSet();
            foreach (var folder in ImportedFolders(s.Code, folders).Distinct())
            {
                var candidates = layers.Candidates(s.Assembly, folder).ToList();
                if (candidates.Count == 0) continue;
                // The highest layer the file can mean: the highest candidate it uses a type of, else the lowest one.
                var used = candidates.Where(c => c != own && declared.TryGetValue(c, out var types) && types.Overlaps(identifiers)).ToList();
                int meant = used.Count > 0 ? used.Max() : candidates.Contains(own) ? own : candidates.Min();
                if (meant > own)
                    violations.Add($"{s.Path} ({layers.Order[own].Assembly}/{layers.Order[own].Folder}) imports {layers.Order[meant].Assembly}/{layers.Order[meant].Folder}");
            }
        }
        return violations;
    }

    /// <summary>Top-level folder names of the library's namespaces a file imports or names.</summary>
    private static IEnumerable<string> ImportedFolders(string code, IReadOnlySet<string> folders)
    {
        foreach (Match m in FullyQualified().Matches(code)) yield return m.Groups[1].Value;
        foreach (Match m in PartlyQualified().Matches(code))
            if (folders.Contains(m.Groups[1].Value)) yield return m.Groups[1].Value;
    }

    private static string StripCommentsAndStrings(string text)
    {
        text = Regex.Replace(text, @"/\*.*?\*/", " ", RegexOptions.Singleline);
        text = Regex.Replace(text, @"""""""(.*?)""""""", "\"\"", RegexOptions.Singleline); // raw strings
        text = Regex.Replace(text, @"@""(?:[^""]|"""")*""", "\"\"");
        text = Regex.Replace(text, @"""(?:[^""\\\n]|\\.)*""", "\"\"");
        text = Regex.Replace(text, @"'(?:[^'\\\n]|\\.)'", "' '");
        return Regex.Replace(text, @"//[^\n]*", "");
    }

    [GeneratedRegex(@"Microsoft\.ML\.LinearAttention\.([A-Z]\w*)")]
    private static partial Regex FullyQualified();

    // X.Type not preceded by '.', outside namespace declarations: a sibling namespace named from inside the library.
    [GeneratedRegex(@"(?<![\w.])([A-Z]\w*)\.[A-Z]\w*")]
    private static partial Regex PartlyQualified();

    [GeneratedRegex(@"\b(?:class|struct|record|interface|enum)\s+([A-Z]\w*)")]
    private static partial Regex Declaration();

    [GeneratedRegex(@"\b[A-Z]\w*\b")]
    private static partial Regex Identifier();
}

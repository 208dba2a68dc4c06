using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>One ```csharp block of a Markdown file.</summary>
/// <param name="File">The Markdown file, as diagnostics name it.</param>
/// <param name="FirstLine">1-based line of the block's first code line.</param>
/// <param name="Placeholders">For a fragment, the names it takes from the surrounding text; null for a whole block.</param>
internal sealed record DocSnippet(string File, int FirstLine, string Code, IReadOnlySet<string>? Placeholders);

/// <summary>
/// Compiles the C# blocks of the documentation as a reader would paste them into a console app of their own (the
/// SDK's implicit usings, the library, TorchSharp and Microsoft.ML referenced). The convention (docs/README.md):
/// a ```csharp block is a whole program: it shows its usings and declares everything it uses. A
/// ```csharp fragment a b … block takes the names a, b, … from the surrounding text; only those may be undeclared.
/// ```csharp fragment * needs a package the tests do not reference: its syntax is checked, nothing more.
/// </summary>
internal static class DocSnippets
{
    private static readonly Regex Fence = new(@"^```(?<info>.*)$");

    /// <summary>The implicit usings of a Microsoft.NET.Sdk console app: what a reader's program has without writing them.</summary>
    private const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Net.Http;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    public static List<DocSnippet> Extract(string file, string markdown)
    {
        var result = new List<DocSnippet>();
        var lines = markdown.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        for (int i = 0; i < lines.Length; i++)
        {
            var m = Fence.Match(lines[i]);
            if (!m.Success) continue;
            int end = Array.FindIndex(lines, i + 1, l => l.StartsWith("```", StringComparison.Ordinal));
            if (end < 0) throw new InvalidDataException($"{file}:{i + 1}: code block never closed.");
            var words = m.Groups["info"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (words.Length > 0 && words[0] is "csharp" or "cs" or "c#")
            {
                if (words.Length > 1 && words[1] != "fragment")
                    throw new InvalidDataException($"{file}:{i + 1}: unknown info string '{m.Groups["info"].Value}'; use ```csharp or ```csharp fragment name1 name2 … (docs/README.md).");
                var placeholders = words.Length > 1 ? words.Skip(2).ToHashSet(StringComparer.Ordinal) : null;
                result.Add(new DocSnippet(file, i + 2, string.Join('\n', lines[(i + 1)..end]), placeholders));
            }
            i = end;
        }
        return result;
    }

    /// <summary>Compiles every snippet in one compilation; returns the errors as "file:line: CSxxxx message".</summary>
    public static List<string> Compile(IReadOnlyList<DocSnippet> snippets)
    {
        var parse = new CSharpParseOptions(LanguageVersion.Preview);
        var trees = new List<SyntaxTree> { CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "ImplicitUsings.cs") };
        var errors = new List<string>();
        for (int n = 0; n < snippets.Count; n++)
        {
            var s = snippets[n];
            var (text, problem) = Wrap(s, n, parse);
            if (problem is not null) errors.Add(problem);
            if (s.Placeholders?.Contains("*") == true) continue; // needs a package the tests do not reference: syntax only
            trees.Add(CSharpSyntaxTree.ParseText(text, parse, path: $"snippet{n}.cs", encoding: Encoding.UTF8));
        }
        var compilation = CSharpCompilation.Create("DocSnippets", trees, References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        foreach (var d in compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error))
        {
            var where = d.Location.GetMappedLineSpan();
            var snippet = SnippetOf(d, snippets);
            if (snippet?.Placeholders is { } names && d.Id is "CS0103" or "CS0246" && names.Contains(NameIn(d))) continue; // taken from the text
            errors.Add($"{where.Path}:{where.StartLinePosition.Line + 1}: {d.Id} {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}");
        }
        return errors;
    }

    /// <summary>
    /// The block as a compilable file: its usings first, its statements in an async method (so top-level await and
    /// args work), its type declarations after; #line keeps the Markdown file's line numbers in the diagnostics.
    /// </summary>
    private static (string Text, string? Problem) Wrap(DocSnippet s, int n, CSharpParseOptions parse)
    {
        var root = (CompilationUnitSyntax)CSharpSyntaxTree.ParseText(s.Code, parse).GetRoot();
        string? problem = null;
        var sb = new StringBuilder();
        string Line(SyntaxNode node) => $"#line {s.FirstLine + node.GetLocation().GetLineSpan().StartLinePosition.Line} \"{s.File}\"\n";
        foreach (var u in root.Usings) sb.Append(Line(u)).Append(u.ToString()).Append('\n');
        sb.Append($"#line hidden\nnamespace DocSnippet{n}\n{{\ninternal static class Program\n{{\nprivate static async Task Main(string[] args)\n{{\nawait Task.CompletedTask;\n");
        bool typesSeen = false;
        foreach (var member in root.Members)
        {
            if (member is GlobalStatementSyntax g)
            {
                if (typesSeen) problem ??= $"{s.File}:{s.FirstLine + g.GetLocation().GetLineSpan().StartLinePosition.Line}: top-level statements must come before type declarations.";
                sb.Append(Line(g)).Append(g.Statement.ToString()).Append('\n');
            }
            else typesSeen = true;
        }
        sb.Append("#line hidden\n}\n}\n");
        foreach (var member in root.Members.Where(m => m is not GlobalStatementSyntax)) sb.Append(Line(member)).Append(member.ToString()).Append('\n');
        sb.Append("#line hidden\n}\n");
        // Syntax errors of the block itself, at the block's lines (the wrapper would report them again, less clearly).
        foreach (var d in root.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error))
            problem ??= $"{s.File}:{s.FirstLine + d.Location.GetLineSpan().StartLinePosition.Line}: {d.Id} {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}";
        return (sb.ToString(), problem);
    }

    private static DocSnippet? SnippetOf(Diagnostic d, IReadOnlyList<DocSnippet> snippets)
    {
        var path = d.Location.SourceTree?.FilePath;
        return path is not null && path.StartsWith("snippet", StringComparison.Ordinal) && int.TryParse(path.AsSpan(7, path.Length - 10), out int n) ? snippets[n] : null;
    }

    private static string NameIn(Diagnostic d)
        => d.Location.SourceTree?.GetRoot().FindNode(d.Location.SourceSpan) switch
        {
            GenericNameSyntax g => g.Identifier.Text,
            IdentifierNameSyntax i => i.Identifier.Text,
            var node => node?.ToString() ?? "",
        };

    /// <summary>What the test assembly runs with: the framework, the library, TorchSharp, Microsoft.ML and the rest of its output folder.</summary>
    private static readonly Lazy<List<MetadataReference>> References = new(() =>
    {
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var local = Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll");
        return tpa.Concat(local).DistinctBy(Path.GetFileName, StringComparer.OrdinalIgnoreCase).Where(IsManaged)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToList();
    });

    private static bool IsManaged(string path)
    {
        try { AssemblyName.GetAssemblyName(path); return true; }
        catch (BadImageFormatException) { return false; }
        catch (FileLoadException) { return false; }
    }

    /// <summary>README.md and docs/*.md of the repository.</summary>
    public static List<DocSnippet> OfRepository(string repo)
        => new[] { Path.Combine(repo, "README.md") }.Concat(Directory.GetFiles(Path.Combine(repo, "docs"), "*.md").Order(StringComparer.Ordinal))
            .SelectMany(f => Extract(Path.GetRelativePath(repo, f).Replace('\\', '/'), File.ReadAllText(f))).ToList();
}

using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Build;

/// <summary>Every C# block of README.md and docs/*.md compiles as written (docs/README.md states the convention).</summary>
public sealed class DocSnippetTests(ITestOutputHelper output)
{
    [Fact]
    public void EveryCSharpBlockOfTheReadmeAndDocsCompiles()
    {
        var snippets = DocSnippets.OfRepository(PackageConsumerTests.RepoRoot());
        Assert.True(snippets.Count >= 15, $"only {snippets.Count} C# blocks found");
        Assert.Contains(snippets, s => s.File == "README.md" && s.Placeholders is null);
        var errors = DocSnippets.Compile(snippets);
        foreach (var e in errors) output.WriteLine(e);
        Assert.True(errors.Count == 0, "C# blocks that do not compile:\n" + string.Join('\n', errors));
    }

    [Fact]
    public void BrokenBlocksAreReportedAtTheirMarkdownLine()
    {
        const string markdown = """
            # Page

            ```csharp
            using Microsoft.ML;

            var serving = new MLContext();
            LinearAttentionModel.Register(serving);
            ```

            ```csharp fragment data
            using Microsoft.ML;

            var ml = new MLContext();
            var view = ml.Data.LoadFromEnumerable(data);
            var count = view.Schema.Count + rows;
            ```

            ```csharp
            using Microsoft.ML;
            using Microsoft.ML.LinearAttention.Persistence;

            var serving = new MLContext();
            LinearAttentionModel.Register(serving);
            ```
            """;
        var snippets = DocSnippets.Extract("page.md", markdown);
        Assert.Equal(3, snippets.Count);
        var errors = DocSnippets.Compile(snippets);
        foreach (var e in errors) output.WriteLine(e);
        // The README's old mistake: LinearAttentionModel without the using of its namespace.
        Assert.Contains(errors, e => e.StartsWith("page.md:7: CS0103", StringComparison.Ordinal) && e.Contains("LinearAttentionModel"));
        // A fragment may leave out only the names it lists: 'data' is listed, 'rows' is not.
        Assert.Contains(errors, e => e.StartsWith("page.md:15: CS0103", StringComparison.Ordinal) && e.Contains("'rows'"));
        Assert.DoesNotContain(errors, e => e.Contains("'data'"));
        Assert.Equal(2, errors.Count); // the third block is the fixed first one: clean
    }

    [Fact]
    public void UnknownInfoStringAndStatementsAfterTypesAreRefused()
    {
        var e = Assert.Throws<InvalidDataException>(() => DocSnippets.Extract("page.md", "```csharp snippet\nvar x = 1;\n```\n"));
        Assert.Contains("csharp fragment", e.Message);
        var errors = DocSnippets.Compile(DocSnippets.Extract("page.md", "```csharp\nclass A { }\nvar x = new A();\n```\n"));
        Assert.Contains(errors, m => m.StartsWith("page.md:3:", StringComparison.Ordinal) && m.Contains("before type declarations"));
        // A syntax-only block (its package is not referenced) is still parsed.
        var syntax = DocSnippets.Compile(DocSnippets.Extract("page.md", "text\n```csharp fragment *\nusing Missing.Package;\nvar x = ;\n```\n"));
        Assert.Equal("page.md:4: CS1525", string.Join(" | ", syntax)[..17]);
        Assert.Single(syntax);
    }
}

using System.Reflection;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>Test methods are named in PascalCase, so one convention holds as tests are added.</summary>
public sealed class TestNamingTests
{
    [Fact]
    public void TestMethodNamesHaveNoUnderscores()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        // TheoryAttribute and the suite's own fact attributes derive from FactAttribute.
        var tests = typeof(TestNamingTests).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(all))
            .Where(m => m.IsDefined(typeof(FactAttribute), inherit: true))
            .ToList();
        Assert.Contains(tests, m => m.Name == nameof(TestMethodNamesHaveNoUnderscores)); // the scan sees the tests
        var offenders = tests.Where(m => m.Name.Contains('_')).Select(m => $"{m.DeclaringType!.FullName}.{m.Name}").Order().ToList();
        Assert.True(offenders.Count == 0, "Name these tests in PascalCase, without underscores:\n" + string.Join("\n", offenders));
    }
}

using System.Reflection;
using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Hybrid;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.SearchSpace;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Sweeps;

/// <summary>
/// The <c>[Choice]</c> lists on the estimators' Attention and HybridPlan fields are curated default search spaces
/// (ML.NET's sealed ChoiceAttribute takes compile-time constants only, so they cannot be read from the registry).
/// A new mechanism needs no entry there; these checks keep every listed candidate a registered mechanism with the
/// bidirectional form the estimators build, so a renamed or dropped mechanism fails here, not in a sweep.
/// </summary>
public class AttentionChoiceTests
{
    public static IEnumerable<object[]> OptionTypes() => new[] { new object[] { typeof(TextClassificationOptions) }, new object[] { typeof(SequenceRegressionOptions) }, new object[] { typeof(ImageClassificationOptions) } };

    [Theory]
    [MemberData(nameof(OptionTypes))]
    public void AttentionChoicesAreRegisteredBidirectionalMechanisms(Type optionsType)
    {
        var attention = Choices(optionsType, "Attention");
        Assert.NotEmpty(attention);
        foreach (var name in attention)
        {
            Assert.True(MixerRegistry.Contains(name), $"{optionsType.Name}.Attention lists '{name}', which is not registered.");
            Assert.True(MixerRegistry.Get(name).SupportsBidirectional, $"{optionsType.Name}.Attention lists '{name}', which has no bidirectional form.");
        }
        var defaultValue = (string)optionsType.GetField("Attention")!.GetValue(Activator.CreateInstance(optionsType))!;
        Assert.Contains(defaultValue, attention);
    }

    [Theory]
    [MemberData(nameof(OptionTypes))]
    public void HybridPlanChoicesNameRegisteredBidirectionalMechanisms(Type optionsType)
    {
        foreach (var spec in Choices(optionsType, "HybridPlan").Where(s => s != "none"))
            foreach (var layer in HybridPlan.Parse(spec).Resolve(4, "linear"))
                Assert.True(MixerRegistry.Get(layer.Name).SupportsBidirectional, $"{optionsType.Name}.HybridPlan '{spec}' puts '{layer.Name}' in an encoder.");
    }

    private static IReadOnlyList<string> Choices(Type optionsType, string field)
        => optionsType.GetField(field)!.GetCustomAttribute<ChoiceAttribute>()!.Candidates.Select(c => c.ToString()!).ToList();
}

using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>
/// Tests that flip process-wide switches (<c>CpuFastPaths</c>) run alone: a switch turned off mid-way through another
/// test's two trainings would change that test's random stream (dropout) or float rounding (AdamW) between them.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideSwitches
{
    public const string Name = "process-wide switches";
}

using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>Seeds libtorch for a test, so every test is repeatable on its own.</summary>
public static class Torch
{
    public static void Seed(long seed = 1234)
    {
        TorchRuntime.EnsureLoaded();
        torch.random.manual_seed(seed);
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Agent;

/// <summary>Kernel benchmark cases of agent attention: 49 agents pooled from q inside the timed call.</summary>
internal static class AgentBench
{
    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make() => s.Qkv();
        yield return new KernelBenchCase("49 agents", false, Make, i =>
        {
            var (agents, valid) = AgentKernels.PoolAgents(i[0], null, 49, null);
            return AgentKernels.Bidirectional(i[0], i[1], i[2], agents, valid, null, null, null);
        });
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Agents gather from the keys (AKᵀ, then ·V) and broadcast to the queries (QAᵀ, then ·V_A): 8·n·D per head.</summary>
    internal static double Flops(FlopShape s, AgentOptions o)
        => 8.0 * o.NumAgents * s.HeadDim * s.Heads;
}

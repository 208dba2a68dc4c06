using Microsoft.ML.LinearAttention.Attention.DeltaNet;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.MoM;

/// <summary>
/// Kernel benchmark cases of Mixture-of-Memories at fla's defaults (8 memories, top-2): routing (softmax, top-k),
/// L2 norm of q and k, β = sigmoid(·) and the Mamba2 gate run inside the timed call. k and v are per memory.
/// </summary>
internal static class MomBench
{
    private const int Memories = 8, TopK = 2;

    internal static IEnumerable<KernelBenchCase> Cases(KernelBenchShape s)
    {
        Tensor[] Make()
        {
            var (aLog, dt) = DeltaMixing.Mamba2Init(s.H);
            return new[]
            {
                s.Randn(s.B, s.H, s.T, s.D), s.Randn(s.B, Memories, s.H, s.T, s.D), s.Randn(s.B, Memories, s.H, s.T, s.D),
                s.Randn(s.B, Memories, s.H, s.T), s.Randn(s.B, Memories, s.H, s.T), s.Randn(s.B, Memories, s.H, s.T), s.Randn(s.B, Memories, s.H, s.T),
                s.Randn(s.B, s.T, Memories),
                aLog.view(s.H, 1).to(s.Device).requires_grad_(true), dt.view(s.H, 1).to(s.Device).requires_grad_(true),
            };
        }
        Tensor Gate(Tensor[] i, int a) => DeltaRule.Mamba2Gate(i[a], i[8], i[9]);
        yield return new KernelBenchCase("causal chunk64 8 memories top-2", true, Make,
            i => MomKernels.Causal(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), Gate(i, 4),
                MomKernels.Route(i[7], TopK, null), null));
        yield return new KernelBenchCase("bidirectional chunk64 8 memories top-2", false, Make,
            i => MomKernels.Bidirectional(DeltaRule.L2Normalize(i[0]), DeltaRule.L2Normalize(i[1]), i[2], torch.sigmoid(i[3]), Gate(i, 4),
                torch.sigmoid(i[5]), Gate(i, 6), MomKernels.Route(i[7], TopK, null), null));
    }

    /// <summary>Attention FLOPs per token (<see cref="FlopShape"/>): Each token runs in its TopK memories: two Gated DeltaNet scans each, Dk = D·ExpandK, Dv = Dk·ExpandV.</summary>
    internal static double Flops(FlopShape s, MomOptions o)
        => 2 * o.TopK * FlopShape.DeltaScan(o.ChunkSize, s.HeadDim * o.ExpandK, s.HeadDim * o.ExpandK * o.ExpandV) * s.Heads;
}

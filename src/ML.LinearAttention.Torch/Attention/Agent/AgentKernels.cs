using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Agent;

/// <summary>
/// Agent attention (Han et al., ECCV 2024; <c>LeapLabTHU/Agent-Attention</c> <c>agent_deit.py</c>): n agent tokens A
/// (pooled queries) first gather from the keys, then broadcast to the queries — two softmax attentions through an
/// n-token bottleneck, O(T·n·D):
/// <code>
/// V_A = softmax(s·A Kᵀ + B₁) V        (over real keys)
/// O   = softmax(s·Q Aᵀ + B₂) V_A      (over valid agents)
/// </code>
/// Shapes: q, k [B, H, T, D], v [B, H, T, Dv], agents [B, H, n, D] (see <see cref="AdaptivePool"/>), agentValid [B, n]
/// bool or null, agentBias B₁ [B or 1, H, n, T] or null, queryBias B₂ [B or 1, H, T, n] or null, mask [B, T] bool or
/// null; result [B, H, T, Dv], zero at padded positions. Softmaxes run in fp32; s = D^−½ by default.
/// </summary>
public static class AgentKernels
{
    private const double Masked = -1e30;   // finite, so a row with nothing allowed stays finite (it is zeroed anyway)

    /// <summary>Agents as the masked adaptive average of the queries over real tokens: [B, H, n, D] and validity [B, n].</summary>
    public static (Tensor Agents, Tensor Valid) PoolAgents(Tensor q, Tensor? keyPaddingMask, int numAgents, (int Height, int Width)? grid)
    {
        var (w, valid) = AdaptivePool.Weights(keyPaddingMask, q.shape[0], q.shape[2], numAgents, grid, q.device);
        return (AdaptivePool.Pool(q, w), valid);
    }

    /// <summary>Fast form: four batched matmuls through the n agents. <paramref name="scale"/> ≤ 0 means D^−½.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor agents, Tensor? agentValid, Tensor? agentBias, Tensor? queryBias,
        Tensor? keyPaddingMask, double scale = 0)
    {
        Check(q, k, v, agents, agentValid, keyPaddingMask);
        using var scope = NewDisposeScope();
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        long t = k.shape[2];
        var gather = agents.matmul(k.transpose(-1, -2)).to(ScalarType.Float32) * s;              // [B, H, n, T]
        if (agentBias is not null) gather = gather + agentBias.to(ScalarType.Float32);
        if (keyPaddingMask is not null) gather = gather.masked_fill(keyPaddingMask.logical_not().view(-1, 1, 1, t), Masked);
        var agentV = gather.softmax(-1).to(v.dtype).matmul(v);                                  // [B, H, n, Dv]
        var broadcast = q.matmul(agents.transpose(-1, -2)).to(ScalarType.Float32) * s;          // [B, H, T, n]
        if (queryBias is not null) broadcast = broadcast + queryBias.to(ScalarType.Float32);
        if (agentValid is not null) broadcast = broadcast.masked_fill(agentValid.logical_not().view(-1, 1, 1, agents.shape[2]), Masked);
        var o = broadcast.softmax(-1).to(v.dtype).matmul(agentV);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin: the explicit T×T token-to-token matrix softmax₂·softmax₁ (exp / sum written out), fp32.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor agents, Tensor? agentValid, Tensor? agentBias, Tensor? queryBias,
        Tensor? keyPaddingMask, double scale = 0)
    {
        Check(q, k, v, agents, agentValid, keyPaddingMask);
        using var scope = NewDisposeScope();
        double s = scale > 0 ? scale : 1.0 / Math.Sqrt(q.shape[3]);
        long t = k.shape[2], n = agents.shape[2];
        var a = agents.to(ScalarType.Float32);
        var keyAllowed = keyPaddingMask is null ? torch.ones(1, 1, 1, t) : keyPaddingMask.to(ScalarType.Float32).view(-1, 1, 1, t);
        var agentAllowed = agentValid is null ? torch.ones(1, 1, 1, n) : agentValid.to(ScalarType.Float32).view(-1, 1, 1, n);
        var g = a.matmul(k.to(ScalarType.Float32).transpose(-1, -2)) * s + (agentBias?.to(ScalarType.Float32) ?? torch.zeros(1));
        var eg = (g - g.amax(new long[] { -1 }, keepdim: true)).exp() * keyAllowed;
        var p1 = eg / eg.sum(-1, keepdim: true);                                               // [B, H, n, T]
        var r = q.to(ScalarType.Float32).matmul(a.transpose(-1, -2)) * s + (queryBias?.to(ScalarType.Float32) ?? torch.zeros(1));
        var er = (r - r.amax(new long[] { -1 }, keepdim: true)).exp() * agentAllowed;
        var p2 = er / er.sum(-1, keepdim: true);                                               // [B, H, T, n]
        var tokenToToken = p2.matmul(p1);                                                       // [B, H, T, T]
        var o = tokenToToken.matmul(v.to(ScalarType.Float32));
        return Heads.ZeroPadded(o.to(v.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor agents, Tensor? agentValid, Tensor? keyPaddingMask)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (agents.dim() != 4 || agents.shape[0] != q.shape[0] || agents.shape[1] != q.shape[1] || agents.shape[3] != q.shape[3])
            throw new ArgumentException($"agents must be [B, H, n, D] = [{q.shape[0]}, {q.shape[1]}, n, {q.shape[3]}]; got {Heads.Shape(agents)}.");
        if (agentValid is not null && (agentValid.dim() != 2 || agentValid.shape[0] != q.shape[0] || agentValid.shape[1] != agents.shape[2]))
            throw new ArgumentException($"agentValid must be [B, n] = [{q.shape[0]}, {agents.shape[2]}]; got {Heads.Shape(agentValid)}.");
    }
}

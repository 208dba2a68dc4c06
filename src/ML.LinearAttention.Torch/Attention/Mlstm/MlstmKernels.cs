using Microsoft.ML.LinearAttention.Attention.Decay;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Mlstm;

/// <summary>Activation of the mLSTM forget gate: f = sigmoid(pre) (xLSTM, fla) or f = exp(pre).</summary>
public enum MlstmForgetGate
{
    /// <summary>log f = logsigmoid(pre) ≤ 0.</summary>
    Sigmoid,
    /// <summary>log f = pre (may be positive; the max state keeps every exponent ≤ 0).</summary>
    Exponential,
}

/// <summary>
/// mLSTM (xLSTM, arXiv 2405.04517; TFLA chunkwise form, arXiv 2503.14376; fla's <c>chunk_mlstm</c>) with exponential
/// input gate, sigmoid or exponential forget gate, normaliser state and max-state stabilisation:
/// C_t = f_t C_{t−1} + exp(i_t) k_t v_tᵀ, n_t = f_t n_{t−1} + exp(i_t) k_t,
/// h_t = C_tᵀ q̃_t / max(|n_tᵀ q̃_t|, 1), q̃ = scale·q (scale null = 1/√Dk). Computed stabilised as fla's
/// <c>naive_recurrent_mlstm</c>: with m_t = max(m_{t−1} + log f_t, i_t) and C, n divided by exp(m_t),
/// h_t = Ĉ_tᵀ q̃_t / max(|n̂_tᵀ q̃_t|, exp(−m_t) + eps).
/// <para>Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; i (input-gate pre-activation) and f (forget-gate pre-activation)
/// [B, H, T]; keyPaddingMask [B, T] bool (true = real, right padding) or null; result [B, H, T, Dv], zero at padded
/// positions. Padded keys write nothing (k = 0) and do not decay the state (log f = 0).</para>
/// <para>Bidirectional form: the full matrix of LION (arXiv 2502.16249), normalised as a whole. Weights
/// log D_ts = i_s + Σ_{s&lt;u≤t} log fF_u for s ≤ t and i_s + Σ_{t≤u&lt;s} log fB_u for s &gt; t, with the forward and reversed
/// scans' own forget gates and one shared input gate (so the diagonal exp(i_t) is defined once);
/// h_t = Σ_s D_ts (q̃_t·k_s) v_s / max(|Σ_s D_ts (q̃_t·k_s)|, 1). Computed as a forward and a row-reversed (within the
/// true length) chunkwise scan whose numerators and normalisers are rescaled to the common max state m = max(m^fwd,
/// m^bwd) and summed with the diagonal term subtracted once: num = num^fwd e^{m^fwd−m} + num^bwd e^{m^bwd−m} −
/// e^{i_t−m} (q̃_t·k_t) v_t, likewise den.</para>
/// </summary>
public static class MlstmKernels
{
    /// <summary>fla's eps in the normaliser.</summary>
    public const double DefaultEps = 1e-6;

    /// <summary>log f from the forget-gate pre-activation, fp32.</summary>
    public static Tensor LogForget(Tensor f, MlstmForgetGate gate) => gate switch
    {
        MlstmForgetGate.Sigmoid => nn.functional.logsigmoid(f.to(ScalarType.Float32)),
        MlstmForgetGate.Exponential => f.to(ScalarType.Float32),
        _ => throw new ArgumentOutOfRangeException(nameof(gate), gate, "Forget gate must be Sigmoid or Exponential."),
    };

    /// <summary>Causal chunkwise form (chunk <paramref name="chunk"/>, any T).</summary>
    public static Tensor Causal(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor? keyPaddingMask, double? scale = null,
        MlstmForgetGate forgetGate = MlstmForgetGate.Sigmoid, double eps = DefaultEps, int chunk = DecayKernels.DefaultChunk)
    {
        Check(q, k, v, i, f, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        var (qs, km, lf) = DecayKernels.Prepare(q, k, LogForget(f, forgetGate), keyPaddingMask, scale);
        var (num, den, m) = MlstmChunked.Parts(qs, km, v, i, lf, chunk);
        var o = Normalise(num, den, m, eps).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Step-by-step recurrent twin of <see cref="Causal"/> (fla's <c>naive_recurrent_mlstm</c>), fp32.</summary>
    public static Tensor CausalRecurrent(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor? keyPaddingMask, double? scale = null,
        MlstmForgetGate forgetGate = MlstmForgetGate.Sigmoid, double eps = DefaultEps)
    {
        Check(q, k, v, i, f, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        var f32 = ScalarType.Float32;
        var (qs, km, lf) = DecayKernels.Prepare(q.to(f32), k.to(f32), LogForget(f, forgetGate), keyPaddingMask, scale);
        var vf = v.to(f32);
        var ig = i.to(f32);
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var c = torch.zeros(b, h, dk, dv, device: q.device);
        var n = torch.zeros(b, h, dk, device: q.device);
        var m = torch.full(new long[] { b, h }, double.NegativeInfinity, device: q.device);
        var outs = new Tensor[t];
        for (long s = 0; s < t; s++)
        {
            var logFm = m + lf.select(2, s);
            var it = ig.select(2, s);
            m = torch.maximum(logFm, it).detach();
            var inGate = (it - m).unsqueeze(-1);
            var fGate = (logFm - m).exp().unsqueeze(-1);
            var ks = km.select(2, s);
            c = fGate.unsqueeze(-1) * c + (inGate.exp() * ks).unsqueeze(-1) * vf.select(2, s).unsqueeze(-2);
            n = fGate * n + inGate.exp() * ks;
            var qt = qs.select(2, s);
            var num = (c * qt.unsqueeze(-1)).sum(-2);                                       // [B, H, Dv]
            var z = (n * qt).sum(-1, keepdim: true);
            outs[s] = (num / torch.maximum(z.abs(), (-m).exp().unsqueeze(-1) + eps)).unsqueeze(2);
        }
        var o = torch.cat(outs, 2).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Bidirectional form: forward and row-reversed chunkwise scans (one batched call) merged as in the class
    /// remarks. fForward, fBackward: the two scans' forget-gate pre-activations [B, H, T] by original position.</summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor i, Tensor fForward, Tensor fBackward, Tensor? keyPaddingMask,
        double? scale = null, MlstmForgetGate forgetGate = MlstmForgetGate.Sigmoid, double eps = DefaultEps, int chunk = DecayKernels.DefaultChunk)
    {
        Check(q, k, v, i, fForward, keyPaddingMask, chunk);
        Check(q, k, v, i, fBackward, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        long b = q.shape[0];
        var (qs, km, lf) = DecayKernels.Prepare(q, k, LogForget(fForward, forgetGate), keyPaddingMask, scale);
        var lb = DecayKernels.MaskGate(LogForget(fBackward, forgetGate), keyPaddingMask);
        var ig = i.to(ScalarType.Float32);
        var idx = RowReversal.Indices(keyPaddingMask, q.shape[2], q.device);
        var (num, den, m) = MlstmChunked.Parts(
            torch.cat(new[] { qs, RowReversal.Apply(qs, idx) }, 0),
            torch.cat(new[] { km, RowReversal.Apply(km, idx) }, 0),
            torch.cat(new[] { v, RowReversal.Apply(v, idx) }, 0),
            torch.cat(new[] { ig, RowReversal.Apply(ig, idx) }, 0),
            torch.cat(new[] { lf, RowReversal.Apply(lb, idx) }, 0), chunk);
        var (mF, mB) = (m.narrow(0, 0, b), RowReversal.Apply(m.narrow(0, b, b), idx));
        var mAll = torch.maximum(mF, mB);
        var wF = (mF - mAll).exp();
        var wB = (mB - mAll).exp();
        var wD = (ig - mAll).exp() * (qs.to(ScalarType.Float32) * km.to(ScalarType.Float32)).sum(-1);   // diagonal, counted once
        var numAll = num.narrow(0, 0, b) * wF.unsqueeze(-1) + RowReversal.Apply(num.narrow(0, b, b), idx) * wB.unsqueeze(-1)
                     - wD.unsqueeze(-1) * v.to(ScalarType.Float32);
        var denAll = den.narrow(0, 0, b) * wF + RowReversal.Apply(den.narrow(0, b, b), idx) * wB - wD;
        var o = Normalise(numAll, denAll, mAll, eps).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Bidirectional"/>: the explicit T×T log-weight matrix, its row max, fp32, quadratic.</summary>
    public static Tensor BidirectionalNaive(Tensor q, Tensor k, Tensor v, Tensor i, Tensor fForward, Tensor fBackward, Tensor? keyPaddingMask,
        double? scale = null, MlstmForgetGate forgetGate = MlstmForgetGate.Sigmoid, double eps = DefaultEps)
    {
        Check(q, k, v, i, fForward, keyPaddingMask, 1);
        Check(q, k, v, i, fBackward, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        var f32 = ScalarType.Float32;
        long t = q.shape[2];
        var (qs, km, lf) = DecayKernels.Prepare(q.to(f32), k.to(f32), LogForget(fForward, forgetGate), keyPaddingMask, scale);
        var lb = DecayKernels.MaskGate(LogForget(fBackward, forgetGate), keyPaddingMask);
        var pf = lf.cumsum(2);
        var pb = torch.cat(new[] { torch.zeros_like(lb.narrow(2, 0, 1)), lb.narrow(2, 0, t - 1).cumsum(2) }, 2);
        var lower = torch.ones(t, t, dtype: ScalarType.Bool, device: q.device).tril();
        var logD = torch.where(lower, pf.unsqueeze(3) - pf.unsqueeze(2), pb.unsqueeze(2) - pb.unsqueeze(3)) + i.to(f32).unsqueeze(2);
        if (keyPaddingMask is not null)
            logD = logD.masked_fill(keyPaddingMask.logical_not().view(-1, 1, 1, t), double.NegativeInfinity);
        var m = logD.amax(new long[] { -1 }).detach();
        var e = qs.matmul(km.transpose(-1, -2)) * (logD - m.unsqueeze(-1)).exp();
        var o = Normalise(e.matmul(v.to(f32)), e.sum(-1), m, eps).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static Tensor Normalise(Tensor num, Tensor den, Tensor m, double eps)
        => num / torch.maximum(den.abs(), (-m).exp() + eps).unsqueeze(-1);

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor i, Tensor f, Tensor? keyPaddingMask, int chunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        DecayKernels.CheckChunk(chunk);
        foreach (var (gate, name) in new[] { (i, "i"), (f, "f") })
            if (gate.dim() != 3 || gate.shape[0] != k.shape[0] || gate.shape[1] != k.shape[1] || gate.shape[2] != k.shape[2])
                throw new ArgumentException($"The mLSTM {(name == "i" ? "input" : "forget")} gate {name} must be [B, H, T] = [{k.shape[0]}, {k.shape[1]}, {k.shape[2]}] " +
                                            $"(one pre-activation per head and step); got {Heads.Shape(gate)}.", name);
    }
}

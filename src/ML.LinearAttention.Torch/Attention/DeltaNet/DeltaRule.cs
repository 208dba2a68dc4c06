using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.DeltaNet;

/// <summary>
/// The general (gated) delta rule shared by DeltaNet, Gated DeltaNet, KDA and MoM: fla's <c>naive_chunk_kda</c>.
/// Per head, with state S [Dk, Dv]:
/// <code>
///   S ← diag(exp(g_t)) S                    (decay: none, scalar g_t, or per key channel g_t ∈ R^Dk)
///   S ← S + β_t k_t (v_t − Sᵀ k_t)ᵀ         (= (I − β_t k_t k_tᵀ) S + β_t k_t v_tᵀ)
///   o_t = Sᵀ (scale · q_t)                  (inclusive: the state after token t's write)
/// </code>
/// Shapes: q, k [B, H, T, Dk]; v [B, H, T, Dv]; β [B, H, T]; g (log-decay, ≤ 0) null, [B, H, T] or [B, H, T, Dk];
/// keyPaddingMask [B, T] bool (true = real) or null. Result [B, H, T, Dv] in v's dtype, zero at padded positions.
/// Padded tokens get β = 0 and g = 0, so they neither write to nor decay the state. Queries and keys are used as
/// given (the layers L2-normalise them first, as fla's <c>use_qk_l2norm_in_kernel</c>); scale defaults to Dk^−½.
/// <para><b>Exclusive</b> reading (used by the reverse scan of the bidirectional form) returns
/// o_t = (diag(exp(g_t)) S_{t−1})ᵀ (scale · q_t): the state decayed to step t but before token t's own write.</para>
/// </summary>
public static partial class DeltaRule
{
    /// <summary>Chunk length of fla's chunkwise kernels.</summary>
    public const int DefaultChunk = 64;

    /// <summary>eps of fla's L2 norm: x · rsqrt(Σx² + eps).</summary>
    public const double L2NormEps = 1e-6;

    /// <summary>x · rsqrt(Σx² + eps) over the last dimension, computed in fp32, returned in x's dtype.</summary>
    public static Tensor L2Normalize(Tensor x, double eps = L2NormEps)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var y = xf * (xf.square().sum(-1, keepdim: true) + eps).rsqrt();
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mamba2-style log-decay used by Gated DeltaNet, KDA and MoM: g = −exp(A_log) · softplus(a + dt_bias), in fp32.
    /// <paramref name="a"/> is the raw projection; <paramref name="aLog"/> and <paramref name="dtBias"/> broadcast
    /// against it (the caller reshapes them). Always ≤ 0.
    /// </summary>
    public static Tensor Mamba2Gate(Tensor a, Tensor aLog, Tensor dtBias)
    {
        using var scope = NewDisposeScope();
        var g = -aLog.to(ScalarType.Float32).exp() * nn.functional.softplus(a.to(ScalarType.Float32) + dtBias.to(ScalarType.Float32));
        return g.MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- causal chunkwise (WY / UT transform)

    /// <summary>
    /// Fast causal chunkwise form (chunk <paramref name="chunk"/>, any T). Within a chunk the UT transform solves
    /// (I + diag(β) tril(A_kk, −1)) [W | U] = diag(β) [K ⊙ exp(G) | V] with one batched triangular solve; across
    /// chunks a tight loop carries the fp32 state: V' = U − W S, S ← exp(G_last) ⊙ S + (K ⊙ exp(G_last − G))ᵀ V';
    /// outputs are O = (Q ⊙ exp(G)) S + tril(A_qk) V' for all chunks at once. Everything runs in fp32; every
    /// exponent is a difference G_r − G_c with r ≥ c, i.e. ≤ 0, so decays never overflow (per-channel gates use
    /// sub-chunk reference points, see <see cref="DeltaRuleIntra"/>).
    /// </summary>
    /// <param name="q">[B, H, T, Dk].</param>
    /// <param name="k">[B, H, T, Dk].</param>
    /// <param name="v">[B, H, T, Dv].</param>
    /// <param name="beta">Write strength [B, H, T], usually in (0, 1) (up to 2 with negative eigenvalues).</param>
    /// <param name="g">Log-decay ≤ 0: null (DeltaNet), [B, H, T] (Gated DeltaNet) or [B, H, T, Dk] (KDA).</param>
    /// <param name="keyPaddingMask">[B, T] bool, true at real tokens, or null.</param>
    /// <param name="exclusive">Read the state before each token's own write (see the class remarks).</param>
    /// <param name="scale">Query scale; null = Dk^−½.</param>
    /// <param name="chunk">Chunk length.</param>
    public static Tensor Chunked(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask,
        bool exclusive = false, double? scale = null, int chunk = DefaultChunk)
    {
        Check(q, k, v, beta, g, keyPaddingMask, chunk);
        using var scope = NewDisposeScope();
        var o = ChunkedCore(q, k, v, beta, g, keyPaddingMask, exclusive ? 0 : q.shape[0], scale, chunk);
        return Heads.ZeroPadded(o, keyPaddingMask).to(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <see cref="Chunked"/> without the checks, the padding zeroing and the final cast (fp32 result). Batch rows
    /// b ≥ <paramref name="exclusiveFrom"/> are read exclusively (so both scans of the bidirectional form share one
    /// chunk loop).
    /// </summary>
    internal static Tensor ChunkedCore(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask,
        long exclusiveFrom, double? scale, int chunk)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var c = ToChunks(q, k, v, beta, g, keyPaddingMask, scale, chunk);
        var intra = DeltaRuleIntra.Compute(c.Q, c.K, c.G, chunk);
        var (akk, aqk) = Masked(intra, c.Beta, exclusiveFrom, b, h, chunk);
        var (w, u) = UtTransform(akk, intra.KDecayed, c.V, c.Beta, dk);
        var (before, vNew) = InterChunk(w, u, intra.KToEnd, intra.EndDecay, b * h, dk, dv);
        var o = Outputs(intra.QDecayed, before, aqk, vNew);                                // [N, NC, C, Dv]
        return o.reshape(b, h, c.PaddedLength, dv).narrow(2, 0, t);
    }

    /// <summary>The fp32 inputs cut into chunks: q (scaled), k [N, NC, C, Dk], v [N, NC, C, Dv], β [N, NC, C, 1], g per chunk or null.</summary>
    internal sealed record ChunkedInputs(Tensor Q, Tensor K, Tensor V, Tensor Beta, Tensor? G, long PaddedLength);

    /// <summary>Stage 1 of <see cref="ChunkedCore"/>: fp32, the scale on q, padding (β = 0, g = 0) up to whole chunks.</summary>
    internal static ChunkedInputs ToChunks(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask, double? scale, int chunk)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        long nc = (t + chunk - 1) / chunk, tp = nc * chunk, n = b * h;
        var (qf, kf, vf, bf, gf) = Prepare(q, k, v, beta, g, keyPaddingMask, scale);
        if (tp != t)
        {
            // Tail padding has β = 0 and g = 0: it leaves the state untouched.
            qf = nn.functional.pad(qf, new long[] { 0, 0, 0, tp - t });
            kf = nn.functional.pad(kf, new long[] { 0, 0, 0, tp - t });
            vf = nn.functional.pad(vf, new long[] { 0, 0, 0, tp - t });
            bf = nn.functional.pad(bf, new long[] { 0, tp - t });
            if (gf is not null)
                gf = gf.dim() == 3 ? nn.functional.pad(gf, new long[] { 0, tp - t }) : nn.functional.pad(gf, new long[] { 0, 0, 0, tp - t });
        }
        return new ChunkedInputs(qf.reshape(n, nc, chunk, dk), kf.reshape(n, nc, chunk, dk), vf.reshape(n, nc, chunk, dv), bf.reshape(n, nc, chunk, 1),
            gf?.dim() == 3 ? gf.reshape(n, nc, chunk) : gf?.reshape(n, nc, chunk, dk), tp);
    }

    /// <summary>
    /// Stage 3: A_kk strictly below the diagonal times β (the UT system), A_qk on and below it (strictly below for the
    /// rows b ≥ <paramref name="exclusiveFrom"/>, which read the state before their own write).
    /// </summary>
    internal static (Tensor akk, Tensor aqk) Masked(DeltaRuleIntra.Parts intra, Tensor beta, long exclusiveFrom, long b, long h, int chunk)
    {
        var device = intra.Akk.device;
        var lowerStrict = torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: device).tril(-1);
        var akk = intra.Akk.masked_fill(lowerStrict.logical_not(), 0.0) * beta;
        var aqk = intra.Aqk.masked_fill(torch.ones(chunk, chunk, dtype: ScalarType.Bool, device: device).tril().logical_not(), 0.0);
        if (exclusiveFrom <= 0) aqk = aqk.masked_fill(lowerStrict.logical_not(), 0.0);
        else if (exclusiveFrom < b)
        {
            var keepDiagonal = (torch.arange(b, device: device) < exclusiveFrom).to(ScalarType.Float32).repeat_interleave(h).view(b * h, 1, 1, 1);
            aqk = aqk * (lowerStrict.to(ScalarType.Float32) + torch.eye(chunk, device: device) * keepDiagonal);
        }
        return (akk, aqk);
    }

    /// <summary>Stage 4, the UT transform: one unit-lower-triangular solve gives W = T·diag(β)·(K⊙e^G) and U = T·diag(β)·V.</summary>
    internal static (Tensor w, Tensor u) UtTransform(Tensor akk, Tensor kDecayed, Tensor v, Tensor beta, long dk)
    {
        var rhs = torch.cat(new[] { kDecayed, v }, -1) * beta;
        var wu = torch.linalg.solve_triangular(akk, rhs, upper: false, left: true, unitriangular: true);
        return (wu.narrow(-1, 0, dk), wu.narrow(-1, dk, v.shape[3]));
    }

    /// <summary>Stage 6: O = (Q ⊙ e^G) S + A_qk V' for all chunks at once.</summary>
    internal static Tensor Outputs(Tensor qDecayed, Tensor before, Tensor aqk, Tensor vNew) => qDecayed.matmul(before) + aqk.matmul(vNew);

    /// <summary>
    /// The only sequential part: per chunk V' = U − W S and S ← decay ⊙ S + K̃ᵀ V' (fp32). Returns the state before
    /// every chunk [N, NC, Dk, Dv] and V' [N, NC, C, Dv]. On CUDA it is one fused kernel each way
    /// (<see cref="FusedDeltaRuleState"/>); elsewhere, or with the kernels off, <see cref="InterChunkLoop"/>.
    /// </summary>
    internal static (Tensor before, Tensor vNew) InterChunk(Tensor w, Tensor u, Tensor kToEnd, Tensor? endDecay, long n, long dk, long dv)
    {
        if (w.device_type != DeviceType.CUDA || FusedDeltaRuleState.Reason(w, dv) is not null)
            return InterChunkLoop(w, u, kToEnd, endDecay, n, dk, dv);
        // The end decay comes as [N, NC, Dk, 1] (per channel) or [N, NC, 1, 1] (per head); the kernel takes [N, NC, Dk].
        var decay = endDecay?.expand(n, w.shape[1], dk, 1).reshape(n, w.shape[1], dk);
        return FusedDeltaRuleState.Scan(w, u, kToEnd, decay);
    }

    /// <summary>The chunk loop (the naive twin of <see cref="FusedDeltaRuleState"/>): three small ops per chunk.</summary>
    internal static (Tensor before, Tensor vNew) InterChunkLoop(Tensor w, Tensor u, Tensor kToEnd, Tensor? endDecay, long n, long dk, long dv)
    {
        var ws = w.unbind(1);
        var us = u.unbind(1);
        var ks = kToEnd.transpose(-1, -2).unbind(1);
        var ds = endDecay?.unbind(1);
        var s = torch.zeros(n, dk, dv, dtype: ScalarType.Float32, device: w.device);
        var states = new Tensor[ws.Length];
        var news = new Tensor[ws.Length];
        for (int i = 0; i < ws.Length; i++)
        {
            states[i] = s;
            var vn = AddBmm(us[i], ws[i], s, alpha: -1);
            news[i] = vn;
            s = AddBmm(ds is null ? s : s * ds[i], ks[i], vn, alpha: 1);
        }
        return (torch.stack(states, 1), torch.stack(news, 1));
    }

    /// <summary>input + alpha · (b1 @ b2) in one baddbmm.</summary>
    private static Tensor AddBmm(Tensor input, Tensor b1, Tensor b2, float alpha)
        // TorchSharp 0.107's Tensor.baddbmm hands (self, batch1, batch2) to libtorch as (batch1, batch2, self), i.e.
        // computes batch2 + self @ batch1; a one-time probe picks the call that gives the documented result either way.
        => BaddbmmSwapped.Value ? b1.baddbmm(b2, input, beta: 1, alpha: alpha) : input.baddbmm(b1, b2, beta: 1, alpha: alpha);

    private static readonly Lazy<bool> BaddbmmSwapped = new(() =>
    {
        using var scope = NewDisposeScope();
        var one = torch.ones(1, 1, 1);
        var two = torch.full(new long[] { 1, 1, 1 }, 2f);
        var three = torch.full(new long[] { 1, 1, 1 }, 3f);
        float r = one.baddbmm(two, three).item<float>();                        // documented: 1 + 2·3 = 7; swapped: 3 + 1·2 = 5
        if (r != 7f && r != 5f) throw new InvalidOperationException($"Unexpected Tensor.baddbmm result {r} in the delta-rule kernel probe.");
        return r == 5f;
    });

    // ---------------------------------------------------------------- naive recurrent twin

    /// <summary>
    /// Naive twin of <see cref="Chunked"/>: the recurrence token by token in fp32 (fla's <c>naive_recurrent_kda</c>).
    /// Same shapes and semantics; slow, for tests.
    /// </summary>
    public static Tensor Recurrent(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask,
        bool exclusive = false, double? scale = null)
    {
        Check(q, k, v, beta, g, keyPaddingMask, 1);
        using var scope = NewDisposeScope();
        var o = RecurrentCore(q, k, v, beta, g, keyPaddingMask, exclusive, scale);
        return Heads.ZeroPadded(o, keyPaddingMask).to(v.dtype).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Recurrent"/> without the checks, the padding zeroing and the final cast (fp32 result).</summary>
    internal static Tensor RecurrentCore(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask,
        bool exclusive, double? scale)
    {
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var (qf, kf, vf, bf, gf) = Prepare(q, k, v, beta, g, keyPaddingMask, scale);
        var s = torch.zeros(b, h, dk, dv, dtype: ScalarType.Float32, device: q.device);
        var outs = new Tensor[t];
        for (long i = 0; i < t; i++)
        {
            if (gf is not null)
            {
                var gi = gf.dim() == 3 ? gf.select(2, i).view(b, h, 1, 1) : gf.select(2, i).unsqueeze(-1);
                s = s * gi.exp();
            }
            var qi = qf.select(2, i).unsqueeze(-2);                               // [B, H, 1, Dk]
            var ki = kf.select(2, i).unsqueeze(-1);                               // [B, H, Dk, 1]
            var vi = vf.select(2, i).unsqueeze(-2);                               // [B, H, 1, Dv]
            var bi = bf.select(2, i).view(b, h, 1, 1);
            if (exclusive) outs[i] = qi.matmul(s);
            s = s + ki.matmul(bi * (vi - ki.transpose(-1, -2).matmul(s)));
            if (!exclusive) outs[i] = qi.matmul(s);
        }
        return torch.cat(outs, 2);
    }

    // ---------------------------------------------------------------- helpers

    private static (Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g) Prepare(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g,
        Tensor? keyPaddingMask, double? scale)
    {
        var f32 = ScalarType.Float32;
        double sc = scale ?? 1.0 / Math.Sqrt(q.shape[3]);
        var qf = q.to(f32) * sc;
        var kf = k.to(f32);
        var vf = v.to(f32);
        var bf = beta.to(f32);
        var gf = g?.to(f32);
        if (keyPaddingMask is not null)
        {
            var m = keyPaddingMask.to(f32).unsqueeze(1);                          // [B, 1, T]
            bf = bf * m;
            if (gf is not null) gf = gf * (gf.dim() == 3 ? m : m.unsqueeze(-1));
        }
        return (qf, kf, vf, bf, gf);
    }

    internal static void Check(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? g, Tensor? keyPaddingMask, int chunk)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        if (q.shape[1] != k.shape[1] || q.shape[2] != k.shape[2] || q.shape[3] != k.shape[3])
            throw new ArgumentException($"q and k must have the same shape [B, H, T, Dk]; got q {Heads.Shape(q)}, k {Heads.Shape(k)}.");
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3];
        if (beta.dim() != 3 || beta.shape[0] != b || beta.shape[1] != h || beta.shape[2] != t)
            throw new ArgumentException($"beta must be [B, H, T] = [{b}, {h}, {t}]; got {Heads.Shape(beta)}.");
        if (g is not null)
        {
            bool scalar = g.dim() == 3 && g.shape[0] == b && g.shape[1] == h && g.shape[2] == t;
            bool channel = g.dim() == 4 && g.shape[0] == b && g.shape[1] == h && g.shape[2] == t && g.shape[3] == dk;
            if (!scalar && !channel)
                throw new ArgumentException($"The log-decay g must be [B, H, T] = [{b}, {h}, {t}] (per head) or [B, H, T, Dk] = [{b}, {h}, {t}, {dk}] (per key channel); got {Heads.Shape(g)}.");
        }
        if (chunk <= 0) throw new ArgumentOutOfRangeException(nameof(chunk), chunk, "Chunk size must be positive (fla uses 64).");
    }
}

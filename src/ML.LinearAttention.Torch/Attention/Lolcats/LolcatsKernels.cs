using Microsoft.ML.LinearAttention.Attention.SlidingWindow;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Lolcats;

/// <summary>
/// LoLCATs window attention (Zhang et al. 2024, <c>HazyResearch/lolcats: linear_window_attention_tk.py</c>): softmax
/// over a local window and linear attention over every other key, under ONE normalizer:
/// <code>
/// o_i = (Σ_{j∈win(i)} γ_h·exp(s_ij − m_i)·v_j + λ_h·Σ_{j∉win(i)} φ(q_i)·φ(k_j)·v_j)
///       / (Σ_{j∈win(i)} γ_h·exp(s_ij − m_i) + λ_h·Σ_{j∉win(i)} φ(q_i)·φ(k_j))
/// </code>
/// with s_ij = q_i·k_j/√D, m_i = max_{j∈win(i)} s_ij (as in the reference, m_i is part of the function: the window's
/// best key gets weight γ, the linear terms are not rescaled), γ_h = sigmoid(window factor) and λ_h = 1 (or 1 − γ_h
/// with LoLCATs' affine factors). Only real keys count; when causal only j ≤ i.
/// <para>Windows: sliding (library convention, as <c>SoftmaxKernels</c>): bidirectional |i−j| ≤ W, causal
/// 0 ≤ i−j &lt; W. Terraced (the reference's <c>get_masks</c>): blocks of W from position 0; query i sees its own block
/// and the previous one (causal: up to i), bidirectional also the next one. The reference aligns its blocks to the end
/// of the sequence; here they start at position 0 so right padding does not move them.</para>
/// <para>Shapes: q/k [B, H, T, D] (softmax branch), fq/fk [B, H, T, F] feature-mapped (non-negative, e.g.
/// <c>HedgehogFeatureMap.Map</c>), v [B, H, T, Dv], windowFactor γ [H] (&gt; 0, typically sigmoid of the learned
/// logits), linearFactor λ [H] or null (= 1), keyPaddingMask [B, T] bool (true = real) or null; result [B, H, T, Dv],
/// zero at padded positions.</para>
/// </summary>
public static class LolcatsKernels
{
    /// <summary>LoLCATs' window: 64.</summary>
    public const int DefaultWindow = 64;

    /// <summary>
    /// Fast form, O(T·W·(D + Dv) + T·F·Dv), no [T, T] tensor: queries in blocks of W see a key span of 3 blocks
    /// (causal: 2), where the window softmax terms and the in-span linear terms are one [W, 3W] weight matrix per block;
    /// linear terms of keys beyond the span come from per-block states Σ φ(k)[v, 1] accumulated (fp32) as exclusive
    /// prefix sums (and suffix sums, bidirectional) built by shifting, never by subtraction.
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor fq, Tensor fk, Tensor v, Tensor windowFactor, Tensor? linearFactor,
        Tensor? keyPaddingMask, int window = DefaultWindow, bool causal = false, bool terraced = false)
    {
        Check(q, k, fq, fk, v, windowFactor, linearFactor, keyPaddingMask, window);
        using var scope = NewDisposeScope();
        var dtype = q.dtype;
        long t = q.shape[2], d = q.shape[3], dv = v.shape[3], h = q.shape[1];
        long before = window, after = causal ? 0 : window;
        var gamma = windowFactor.to(ScalarType.Float32).view(1, h, 1, 1, 1);
        var lambda = linearFactor?.to(ScalarType.Float32).view(1, h, 1, 1, 1);

        fk = Heads.ZeroPadded(fk, keyPaddingMask);
        var qb = BandedBlocks.Blocks(q, window);                                         // [B, H, NC, W, D]
        var fqb = BandedBlocks.Blocks(fq, window);
        var ks = BandedBlocks.Spans(k, window, before, after);                           // [B, H, NC, L, D]
        var fks = BandedBlocks.Spans(fk, window, before, after);
        var vs = BandedBlocks.Spans(v, window, before, after);
        // The normalizer rides along as a column of ones, also at span positions outside 0 … T−1: the rows that pad
        // T up to whole blocks see only themselves there and must not get 0/0 (NaN that the backward would spread).
        vs = torch.cat(new[] { vs, torch.ones_like(vs.narrow(-1, 0, 1)) }, -1);      // [B, H, NC, L, Dv+1]
        long nc = qb.shape[2];

        var offsets = BandedBlocks.Offsets(window, before, after, q.device);            // [W, L] = i − j
        var keyValid = BandedBlocks.SpanKeyValid(keyPaddingMask, t, window, before, after, q.device);
        var inOrder = causal ? offsets.ge(0) : torch.ones_like(offsets, dtype: ScalarType.Bool);
        var band = terraced ? inOrder : BandedBlocks.Band(offsets, window, causal);
        var windowAllowed = band & (keyValid | offsets.eq(0));                           // padded queries keep themselves
        var linearAllowed = inOrder & band.logical_not() & keyValid;

        // One weight matrix per block over its span: window softmax terms + in-span linear terms, fp32.
        // Scores in fp32: they feed exp directly, and bf16-rounded scores (8-bit mantissa) would put ~1% noise on
        // every window weight. The [W, L] blocks are small, so the fp32 copy of q and the key spans is cheap.
        var s = qb.to(ScalarType.Float32).matmul(ks.to(ScalarType.Float32).transpose(-1, -2)) / Math.Sqrt(d);
        s = s.masked_fill(windowAllowed.logical_not(), double.NegativeInfinity);
        var m = s.amax(new long[] { -1 }, keepdim: true);
        var aLin = fqb.matmul(fks.transpose(-1, -2)).to(ScalarType.Float32).masked_fill(linearAllowed.logical_not(), 0.0);
        if (lambda is not null) aLin = aLin * lambda;
        var a = gamma * (s - m).exp() + aLin;
        var total = a.to(dtype).matmul(vs).to(ScalarType.Float32);                     // [B, H, NC, W, Dv+1]

        // Keys beyond the span: blocks ≤ c−2 (and ≥ c+2 bidirectional), from per-block states.
        if (nc > 2)
        {
            var fkb = BandedBlocks.Blocks(fk, window);
            var vb = BandedBlocks.Blocks(v, window);
            var v1b = torch.cat(new[] { vb, torch.ones_like(vb.narrow(-1, 0, 1)) }, -1);
            var states = fkb.transpose(-1, -2).matmul(v1b).to(ScalarType.Float32);       // [B, H, NC, F, Dv+1]
            var two = torch.zeros_like(states.narrow(2, 0, 2));
            var far = torch.cat(new[] { two, states.narrow(2, 0, nc - 2).cumsum(2) }, 2);
            if (!causal)
            {
                var suffix = states.flip(2).narrow(2, 0, nc - 2).cumsum(2).flip(2);         // Σ_{c' ≥ c+2}, rows 0 … NC−3
                far = far + torch.cat(new[] { suffix, two }, 2);
            }
            var outFar = fqb.matmul(far.to(dtype)).to(ScalarType.Float32);
            total = total + (lambda is null ? outFar : outFar * lambda);
        }
        var o = BandedBlocks.Unblock(total.narrow(-1, 0, dv) / total.narrow(-1, dv, 1), t).to(dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>Naive twin of <see cref="Attention"/>: explicit [T, T] window and linear masks, fp32.</summary>
    public static Tensor AttentionNaive(Tensor q, Tensor k, Tensor fq, Tensor fk, Tensor v, Tensor windowFactor, Tensor? linearFactor,
        Tensor? keyPaddingMask, int window = DefaultWindow, bool causal = false, bool terraced = false)
    {
        Check(q, k, fq, fk, v, windowFactor, linearFactor, keyPaddingMask, window);
        using var scope = NewDisposeScope();
        long t = q.shape[2], d = q.shape[3], h = q.shape[1];
        var i = torch.arange(t, device: q.device).view(t, 1);
        var j = torch.arange(t, device: q.device).view(1, t);
        var inOrder = causal ? j.le(i) : torch.ones(t, t, dtype: ScalarType.Bool, device: q.device);
        Tensor band;
        if (terraced)
        {
            var blockGap = i.div(window, rounding_mode: RoundingMode.floor) - j.div(window, rounding_mode: RoundingMode.floor);
            band = inOrder & (causal ? blockGap.le(1) : blockGap.abs().le(1));
        }
        else
        {
            band = causal ? (i - j).ge(0) & (i - j).lt(window) : (i - j).abs().le(window);
        }
        var keyReal = keyPaddingMask is null
            ? torch.ones(1, 1, 1, t, dtype: ScalarType.Bool, device: q.device)
            : keyPaddingMask.view(-1, 1, 1, t);
        var windowAllowed = band & (keyReal | i.eq(j));
        var linearAllowed = inOrder & band.logical_not() & keyReal;

        var s = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-1, -2)) / Math.Sqrt(d);
        s = s.masked_fill(windowAllowed.logical_not(), double.NegativeInfinity);
        var m = s.amax(new long[] { -1 }, keepdim: true);
        var aWin = windowFactor.to(ScalarType.Float32).view(1, h, 1, 1) * (s - m).exp();
        var aLin = fq.to(ScalarType.Float32).matmul(fk.to(ScalarType.Float32).transpose(-1, -2)).masked_fill(linearAllowed.logical_not(), 0.0);
        if (linearFactor is not null) aLin = aLin * linearFactor.to(ScalarType.Float32).view(1, h, 1, 1);
        var a = aWin + aLin;
        var o = a.matmul(v.to(ScalarType.Float32)) / a.sum(-1, keepdim: true);
        return Heads.ZeroPadded(o.to(q.dtype), keyPaddingMask).MoveToOuterDisposeScope();
    }

    private static void Check(Tensor q, Tensor k, Tensor fq, Tensor fk, Tensor v, Tensor windowFactor, Tensor? linearFactor, Tensor? keyPaddingMask, int window)
    {
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        Heads.CheckQkv(fq, fk, v, keyPaddingMask);
        if (!q.shape.SequenceEqual(k.shape))
            throw new ArgumentException($"LoLCATs needs q and k of one shape; got q {Heads.Shape(q)}, k {Heads.Shape(k)}.");
        if (!fq.shape.SequenceEqual(fk.shape) || fq.shape[1] != q.shape[1] || fq.shape[2] != q.shape[2])
            throw new ArgumentException($"Feature-mapped fq/fk must be [B, H, T, F] like q's [B, H, T]; got fq {Heads.Shape(fq)}, fk {Heads.Shape(fk)}, q {Heads.Shape(q)}.");
        if (windowFactor.dim() != 1 || windowFactor.shape[0] != q.shape[1])
            throw new ArgumentException($"The window factor must be one value per head, [{q.shape[1]}]; got {Heads.Shape(windowFactor)}.");
        if (linearFactor is not null && (linearFactor.dim() != 1 || linearFactor.shape[0] != q.shape[1]))
            throw new ArgumentException($"The linear factor must be one value per head, [{q.shape[1]}]; got {Heads.Shape(linearFactor)}.");
        BandedBlocks.CheckWindow(window, "LoLCATs window attention");
    }
}

using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// LASP-2-style sequence parallelism for bidirectional linear attention (Sun et al., 2025): each rank holds a contiguous
/// slice of every sequence, [B, H, T_r, D]; it builds the state of its slice, S_r = Σ φ(k)ᵀv and z_r = Σ φ(k) over its
/// real tokens, and ONE collective on the states (an AllGather of the [B, H, Dk, Dv + 1] state plus the real-token
/// counts, summed over ranks) gives every rank the state of the whole sequence, from which it computes the outputs of
/// its own slice. Communication per layer is independent of T. For the bidirectional (encoder) form the gathered
/// states are simply summed, so the AllGather is equivalent to an AllReduce; the AllGather is kept because it is
/// LASP-2's form, the one a causal or decayed variant needs (rank r then reads the prefix of slices j &lt; r).
/// The backward pass of "sum of every rank's state, replicated on all ranks" is an all-reduce (sum) of the incoming
/// state gradients, done in a custom autograd function.
/// <para>Everything else in an encoder is token-wise and needs nothing (projections, FFN, norms; rotary positions need the
/// slice's offset: <see cref="RotaryAt"/>), except pooling (<see cref="MeanPool"/>). Softmax layers would need the
/// keys and values of all slices and are not supported here.</para>
/// </summary>
public static class SequenceParallel
{
    /// <summary>Length of rank <paramref name="rank"/>'s slice of a length-<paramref name="t"/> sequence (the first T mod W ranks get one more).</summary>
    public static long SliceLength(long t, int rank, int worldSize)
    {
        Check(t, rank, worldSize);
        return t / worldSize + (rank < t % worldSize ? 1 : 0);
    }

    /// <summary>Position of rank <paramref name="rank"/>'s first token in the whole sequence (its offset for positions).</summary>
    public static long SliceStart(long t, int rank, int worldSize)
    {
        Check(t, rank, worldSize);
        long r = rank;
        return r * (t / worldSize) + Math.Min(r, t % worldSize);
    }

    /// <summary>This rank's contiguous slice of <paramref name="x"/> along <paramref name="dim"/> (a view).</summary>
    public static Tensor Slice(Tensor x, long dim, int rank, int worldSize)
    {
        long t = x.shape[dim < 0 ? x.dim() + dim : dim];
        return x.narrow(dim, SliceStart(t, rank, worldSize), SliceLength(t, rank, worldSize));
    }

    /// <summary>
    /// Rotary positions of a slice: the rotate-half RoPE of <see cref="Rotary.Apply"/> on x [B, H, T_r, D] at the
    /// positions <paramref name="offset"/> … offset + T_r − 1 of the whole sequence (offset = <see cref="SliceStart"/>),
    /// so that the slices of a sequence are rotated exactly as the unsplit sequence. fp32 angles, x's dtype out.
    /// </summary>
    public static Tensor RotaryAt(Tensor x, long offset, double theta = 10000.0)
    {
        long t = x.shape[2], d = x.shape[3];
        if (d % 2 != 0) throw new ArgumentException($"RoPE needs an even head dimension; got {d}.");
        if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset), offset, "The slice offset must be 0 or positive.");
        using var scope = NewDisposeScope();
        var invFreq = (arange(0, d, 2, dtype: ScalarType.Float32, device: x.device) * (-Math.Log(theta) / d)).exp();      // [D/2]
        var angles = arange(offset, offset + t, dtype: ScalarType.Float32, device: x.device).unsqueeze(1) * invFreq.unsqueeze(0);
        angles = cat(new[] { angles, angles }, -1);                                                                        // [T_r, D], half-split layout
        return Rotary.ApplyTables(x, angles.cos(), angles.sin(), RotaryLayout.HalfSplit).MoveToOuterDisposeScope();
    }

    private static void Check(long t, int rank, int worldSize)
    {
        CollectiveChecks.RankAndWorld(rank, worldSize);
        if (t < worldSize)
            throw new ArgumentException($"A sequence of {t} token(s) cannot be split over {worldSize} ranks (every rank needs at least one token); use fewer ranks or data parallelism for short inputs.");
    }

    /// <summary>
    /// Bidirectional linear attention of this rank's slice against the whole sequence: the sequence-parallel twin of
    /// <see cref="LinearAttentionKernels.Bidirectional"/> (same normalisation: eps × the number of real tokens of the
    /// whole row). q, k [B, H, T_r, Dk] (already feature-mapped), v [B, H, T_r, Dv], keyPaddingMask [B, T_r] (this
    /// slice's part of the row mask) or null; result [B, H, T_r, Dv], zero at padded positions. Every rank must call
    /// it with the same B, H, Dk, Dv (T_r may differ). States are accumulated and exchanged in fp32.
    /// </summary>
    public static Tensor Bidirectional(Tensor q, Tensor k, Tensor v, Tensor? keyPaddingMask, ICollectives collectives, bool normalize = true,
        double eps = LinearAttentionKernels.DefaultEps)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        Heads.CheckQkv(q, k, v, keyPaddingMask);
        using var scope = NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], dk = q.shape[3], dv = v.shape[3];
        var kz = Heads.ZeroPadded(k, keyPaddingMask);
        var state = LinearAttentionKernels.KeyValueState(kz, v).to(ScalarType.Float32);              // [B, H, Dk, Dv]
        var keySum = kz.sum(2, type: ScalarType.Float32).unsqueeze(-1);                              // [B, H, Dk, 1]
        var count = keyPaddingMask is null
            ? torch.full(new[] { b }, (double)t, ScalarType.Float32, q.device)
            : keyPaddingMask.sum(1, type: ScalarType.Float32);                                       // real tokens of this slice, [B]
        var local = cat(new[] { cat(new[] { state, keySum }, -1).reshape(-1), count });
        var global = SumOverRanks(local, collectives);                                               // the one collective
        long n = b * h * dk * (dv + 1);
        var both = global.narrow(0, 0, n).view(b, h, dk, dv + 1);
        var rows = global.narrow(0, n, b).view(b, 1, 1, 1).detach();                                 // real tokens of whole rows
        var globalState = both.narrow(-1, 0, dv).to(q.dtype);
        Tensor o;
        if (normalize)
        {
            var den = q.matmul(both.narrow(-1, dv, 1).to(q.dtype));                                  // [B, H, T_r, 1]
            o = q.matmul(globalState) / (den + rows.to(q.dtype) * eps);
        }
        else o = q.matmul(globalState) / rows.clamp_min(1).to(q.dtype);
        return Heads.ZeroPadded(o, keyPaddingMask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Mean over the real tokens of whole sequences from slices: x [B, T_r, C], mask [B, T_r] (true = real) or null →
    /// [B, C], the same on every rank (one collective of B·(C + 1) values, differentiable).
    /// <para>Gradients: the pooled output is replicated, so whatever follows it (head, loss) runs identically on every
    /// rank. The backward all-reduces (sums) the incoming gradients, i.e. each rank's replicated loss counts once per
    /// rank; averaging the parameter gradients over the ranks afterwards (<see cref="DataParallel.AllReduceGradients"/>,
    /// exactly as in data parallelism) then gives the gradients of one unsplit run. Equivalently: divide each rank's
    /// loss by the world size and sum the gradients.</para>
    /// </summary>
    public static Tensor MeanPool(Tensor x, Tensor? mask, ICollectives collectives)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[2];
        var w = mask is null ? ones(b, x.shape[1], 1, dtype: ScalarType.Float32, device: x.device) : mask.to(ScalarType.Float32).unsqueeze(-1);
        var sums = (x.to(ScalarType.Float32) * w).sum(1);                                         // [B, C]
        var local = cat(new[] { sums, w.sum(1) }, -1).reshape(-1);                               // [B·(C + 1)]
        var global = SumOverRanks(local, collectives).view(b, c + 1);
        return (global.narrow(1, 0, c) / global.narrow(1, c, 1).detach().clamp_min(1)).to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Σ over ranks of <paramref name="local"/> (1-D), replicated on every rank, as an AllGather followed by a sum in rank
    /// order; differentiable (the backward is an all-reduce of the incoming gradients).
    /// </summary>
    public static Tensor SumOverRanks(Tensor local, ICollectives collectives)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        if (collectives.WorldSize == 1) return local;
        return GatherSum.apply(new Box(collectives), local.contiguous());
    }

    /// <summary>
    /// Rethrows an error raised by a collective inside the backward pass (exceptions must not cross libtorch's
    /// autograd engine, which would end the process; they are kept here). Call after <c>backward()</c>.
    /// </summary>
    public static void ThrowIfBackwardFailed()
    {
        var e = Interlocked.Exchange(ref _backwardFailure, null);
        if (e is not null) throw new InvalidOperationException("A sequence-parallel collective failed in the backward pass: " + e.Message, e);
    }

    private static Exception? _backwardFailure;

    private sealed class Box(ICollectives value)
    {
        public ICollectives Value { get; } = value;
    }

    private sealed class GatherSum : autograd.SingleTensorFunction<GatherSum>
    {
        public override string Name => "SequenceParallelGatherSum";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var collectives = ((Box)vars[0]).Value;
            var local = (Tensor)vars[1];
            ctx.save_data("collectives", collectives);
            using var gathered = collectives.AllGather(local);                                     // [W, N]: LASP-2's AllGather
            return gathered.sum(0L);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            try
            {
                var collectives = (ICollectives)ctx.get_data("collectives");
                var grad = grad_output.contiguous().clone();
                collectives.AllReduceSum(grad);                                                     // d local_r = Σ over ranks of d global
                return new List<Tensor> { null!, grad };
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _backwardFailure, e, null);
                return new List<Tensor> { null!, zeros_like(grad_output) };
            }
        }
    }
}

using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// Dropout (zero each element with probability p in training, scale the rest by 1 / (1 − p)) with a faster mask on
/// the CPU. libtorch's CPU dropout draws one Bernoulli sample at a time from a generator behind a lock, which made
/// dropout about a third of a BERT block's forward time on two cores; here the mask comes from a counter-based hash of
/// a seed drawn from libtorch's generator, filled on all threads. Training stays reproducible for a fixed seed (and
/// under activation checkpointing, which replays the generator), and the mask does not depend on the thread count.
/// GPUs keep libtorch's kernel. Like nn.Dropout, the module has no parameters and is the identity in eval mode.
/// </summary>
public sealed class FastDropout : nn.Module<Tensor, Tensor>
{
    private readonly double _p;

    public FastDropout(double p) : base("Dropout")
    {
        if (double.IsNaN(p) || p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout must lie in [0, 1).");
        _p = p;
    }

    /// <summary>The probability of zeroing an element.</summary>
    public double Probability => _p;

    public override Tensor forward(Tensor x) => DropoutKernels.Dropout(x, _p, training);
}

/// <summary>The dropout function behind <see cref="FastDropout"/>.</summary>
public static class DropoutKernels
{
    /// <summary>Mask resolution: an element is dropped when 16 random bits fall below round(p · 65536).</summary>
    private const int Levels = 1 << 16;

    /// <summary>Elements per parallel chunk (a multiple of 4: one 64-bit hash gives four elements).</summary>
    private const int Chunk = 1 << 16;

    /// <summary>x with elements zeroed at probability <paramref name="p"/> and the rest scaled so that the expectation
    /// is x; x itself (as a new handle) outside training or at p = 0.</summary>
    public static Tensor Dropout(Tensor x, double p, bool training)
    {
        if (!training || p == 0) return x.alias();
        if (x.device_type != DeviceType.CPU || !HasFastMask(x.dtype) || !Runtime.CpuFastPaths.FastDropout) return nn.functional.dropout(x, p, true);
        using var scope = NewDisposeScope();
        // One draw from libtorch's CPU generator: manual_seed and checkpoint replays reproduce the mask.
        long seed = randint(long.MaxValue, new long[] { 1 }, dtype: ScalarType.Int64).item<long>();
        var mask = ScaledMask(x.shape, x.dtype, p, unchecked((ulong)seed));
        return (x * mask).MoveToOuterDisposeScope();
    }

    /// <summary>Whether the CPU mask supports <paramref name="dtype"/> (others use libtorch's dropout).</summary>
    public static bool HasFastMask(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>
    /// The mask for <paramref name="seed"/>: 0 where dropped, else the scale 65536 / (65536 − round(p · 65536)), which is
    /// 1 / (1 − p) to a relative 1e-4 for p ≤ 0.9 and keeps the expectation exact for the mask's own keep rate (in bf16 / fp16 the scale
    /// is rounded to that type, as libtorch's mask is).
    /// </summary>
    public static Tensor ScaledMask(long[] shape, ScalarType dtype, double p, ulong seed) => ScaledMask(shape, dtype, p, seed, Vector512.IsHardwareAccelerated);

    /// <summary><see cref="ScaledMask(long[], ScalarType, double, ulong)"/> with or without the 512-bit vector fill
    /// (the scalar fill is its reference: both give the same mask).</summary>
    internal static Tensor ScaledMask(long[] shape, ScalarType dtype, double p, ulong seed, bool vectorized)
    {
        if (!HasFastMask(dtype)) throw new ArgumentException($"The CPU dropout mask supports float32, bfloat16 and float16, not {dtype}.", nameof(dtype));
        if (double.IsNaN(p) || p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout must lie in [0, 1).");
        int threshold = (int)Math.Round(p * Levels);
        if (threshold >= Levels) threshold = Levels - 1;
        float scale = (float)Levels / (Levels - threshold);
        var mask = empty(shape, dtype: dtype);
        long n = mask.numel();
        if (n == 0) return mask;
        IntPtr data = Runtime.NativeTensorAccess.DataPointer(mask);
        ushort scaleBits = dtype switch
        {
            ScalarType.BFloat16 => Runtime.BFloat16Bits.FromSingle(scale),
            ScalarType.Float16 => BitConverter.HalfToUInt16Bits((Half)scale),
            _ => 0,
        };
        long chunks = (n + Chunk - 1) / Chunk;
        void Fill(long c)
        {
            long start = c * Chunk, end = Math.Min(n, start + Chunk);
            unsafe
            {
                long done = start;
                if (vectorized)
                    done = dtype == ScalarType.Float32 ? FillFloatVector((float*)data, start, end, seed, threshold, scale)
                                                       : FillHalfWidthVector((ushort*)data, start, end, seed, threshold, scaleBits);
                if (dtype == ScalarType.Float32) FillFloat((float*)data, done, end, seed, threshold, scale);
                else FillHalfWidth((ushort*)data, done, end, seed, threshold, scaleBits);
            }
        }
        int threads = Math.Max(1, torch.get_num_threads());
        if (chunks == 1 || threads == 1) for (long c = 0; c < chunks; c++) Fill(c);
        else Parallel.For(0L, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, Fill);
        return mask;
    }

    // Element i takes bits [16·(i mod 4), 16·(i mod 4) + 16) of Hash(seed, i / 4); chunks start at multiples of 4.
    private static unsafe void FillFloat(float* mask, long start, long end, ulong seed, int threshold, float scale)
    {
        for (long i = start; i < end; i += 4)
        {
            ulong bits = Hash(seed, (ulong)(i >> 2));
            long stop = Math.Min(end, i + 4);
            for (long j = i; j < stop; j++, bits >>= 16) mask[j] = (int)(bits & 0xFFFF) < threshold ? 0f : scale;
        }
    }

    private static unsafe void FillHalfWidth(ushort* mask, long start, long end, ulong seed, int threshold, ushort scaleBits)
    {
        for (long i = start; i < end; i += 4)
        {
            ulong bits = Hash(seed, (ulong)(i >> 2));
            long stop = Math.Min(end, i + 4);
            for (long j = i; j < stop; j++, bits >>= 16) mask[j] = (int)(bits & 0xFFFF) < threshold ? (ushort)0 : scaleBits;
        }
    }

    // 32 elements per step: eight hashes, read as 32 little-endian 16-bit lanes, are exactly the scalar layout.
    private static unsafe long FillFloatVector(float* mask, long start, long end, ulong seed, int threshold, float scale)
    {
        var limit = Vector512.Create((uint)threshold);
        var kept = Vector512.Create(scale);
        long i = start;
        for (; i + 32 <= end; i += 32)
        {
            var lanes = HashVector(seed, (ulong)(i >> 2)).AsUInt16();
            var (low, high) = Vector512.Widen(lanes);
            Vector512.ConditionalSelect(Vector512.LessThan(low, limit).AsSingle(), Vector512<float>.Zero, kept).Store(mask + i);
            Vector512.ConditionalSelect(Vector512.LessThan(high, limit).AsSingle(), Vector512<float>.Zero, kept).Store(mask + i + 16);
        }
        return i;
    }

    private static unsafe long FillHalfWidthVector(ushort* mask, long start, long end, ulong seed, int threshold, ushort scaleBits)
    {
        var limit = Vector512.Create((ushort)Math.Min(threshold, ushort.MaxValue));
        var kept = Vector512.Create(scaleBits);
        long i = start;
        for (; i + 32 <= end; i += 32)
        {
            var lanes = HashVector(seed, (ulong)(i >> 2)).AsUInt16();
            Vector512.ConditionalSelect(Vector512.LessThan(lanes, limit), Vector512<ushort>.Zero, kept).Store(mask + i);
        }
        return i;
    }

    /// <summary><see cref="Hash"/> of counters first … first + 7.</summary>
    private static Vector512<ulong> HashVector(ulong seed, ulong first)
    {
        var counters = Vector512.Create(first + 1) + Vector512.Create(0UL, 1, 2, 3, 4, 5, 6, 7);
        var z = Vector512.Create(seed) + counters * 0x9E3779B97F4A7C15UL;
        z = (z ^ Vector512.ShiftRightLogical(z, 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ Vector512.ShiftRightLogical(z, 27)) * 0x94D049BB133111EBUL;
        return z ^ Vector512.ShiftRightLogical(z, 31);
    }

    /// <summary>SplitMix64's finalizer over seed + counter · golden ratio: a statistically strong counter-based hash.</summary>
    private static ulong Hash(ulong seed, ulong counter)
    {
        ulong z = unchecked(seed + (counter + 1) * 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}

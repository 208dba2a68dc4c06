using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Length-bucketed dynamic padding over a stream: rows are gathered into a bounded buffer, shuffled (seeded) when
/// training, sorted by length so that each batch pads little, cut into batches of at most <c>batchSize</c> rows and
/// <c>maxBatchTokens</c> padded tokens, and the batches of the buffer are shuffled again.
/// </summary>
public static class Batching
{
    /// <summary>Batches of <paramref name="source"/>; <paramref name="rng"/> null keeps the order (evaluation).</summary>
    public static IEnumerable<List<Example>> Bucketed(IEnumerable<Example> source, int batchSize, long maxBatchTokens, int bufferRows, Random? rng)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "BatchSize must be positive.");
        bufferRows = Math.Max(bufferRows, batchSize);
        var buffer = new List<Example>(bufferRows);
        foreach (var e in source)
        {
            buffer.Add(e);
            if (buffer.Count < bufferRows) continue;
            foreach (var b in Cut(buffer, batchSize, maxBatchTokens, rng)) yield return b;
            buffer = new List<Example>(bufferRows);
        }
        if (buffer.Count > 0)
            foreach (var b in Cut(buffer, batchSize, maxBatchTokens, rng)) yield return b;
    }

    private static List<List<Example>> Cut(List<Example> buffer, int batchSize, long maxBatchTokens, Random? rng)
    {
        if (rng is not null) Shuffle(buffer, rng);
        var sorted = buffer.OrderBy(e => e.Length).ToList();
        var batches = new List<List<Example>>();
        var current = new List<Example>();
        foreach (var e in sorted)
        {
            // sorted ascending: the newest row is the longest, so padded size = (count + 1) × its length
            if (current.Count > 0 && (current.Count >= batchSize || (long)(current.Count + 1) * e.Length > maxBatchTokens))
            {
                batches.Add(current);
                current = new List<Example>();
            }
            current.Add(e);
        }
        if (current.Count > 0) batches.Add(current);
        if (rng is not null) Shuffle(batches, rng);
        return batches;
    }

    /// <summary>Seeded Fisher–Yates shuffle.</summary>
    public static void Shuffle<T>(IList<T> list, Random rng)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }

    /// <summary>
    /// Refuses a batch whose padded host buffers (rows × steps, × features for numeric input) would not fit one .NET
    /// array (<see cref="Array.MaxLength"/>, under 2³¹ elements), before an int product of the sizes could wrap.
    /// </summary>
    internal static void CheckCells(int rows, int steps, int numericFeatures)
    {
        long cells = (long)rows * steps * Math.Max(1, numericFeatures);
        if (cells <= Array.MaxLength) return;
        string what = numericFeatures > 0 ? $"{rows} row(s) × {steps} steps × {numericFeatures} features" : $"{rows} row(s) × {steps} tokens";
        throw new InvalidOperationException($"A batch of {what} = {cells} padded values is more than one host buffer holds ({Array.MaxLength}, " +
            "the .NET array limit). Lower MaxBatchTokens or BatchSize (training), InferenceBatchSize (scoring) or MaxSequenceLength.");
    }

    /// <summary>
    /// Pads rows into a <see cref="ModelBatch"/> on <paramref name="device"/>. NaN side features become
    /// <paramref name="sideFill"/> (the training means) so that they standardise to zero.
    /// </summary>
    public static ModelBatch Collate(IReadOnlyList<Example> rows, Device device, int padId, int numericFeatures, int sideLength,
        float[]? sideFill, LabelKind? labels)
    {
        int b = rows.Count;
        int t = rows.Max(r => r.Length);
        CheckCells(b, t, numericFeatures);
        var mask = new bool[b * t];
        long real = 0;
        Tensor? tokens = null, segments = null, values = null, side = null, labelTensor = null, pixels = null;
        if (rows[0].Pixels is { } first)
        {
            // images: every row was resized to the model's size by the reader, so they stack without padding
            var p = new byte[(long)b * first.Length];
            for (int i = 0; i < b; i++)
            {
                var r = rows[i].Pixels ?? throw new InvalidOperationException("A batch mixes image rows and rows without an image.");
                if (r.Length != first.Length)
                    throw new InvalidOperationException($"Images of one batch must have the same size; got {first.Length} and {r.Length} bytes.");
                r.AsSpan().CopyTo(p.AsSpan(i * first.Length));
                for (int j = 0; j < rows[i].Length; j++) mask[i * t + j] = true;
                real += rows[i].Length;
            }
            pixels = tensor(p, new long[] { b, first.Length }, device: device);
        }
        else if (numericFeatures > 0)
        {
            int f = numericFeatures;
            var v = new float[b * t * f];
            for (int i = 0; i < b; i++)
            {
                rows[i].Values!.AsSpan().CopyTo(v.AsSpan(i * t * f));
                for (int j = 0; j < rows[i].Length; j++) mask[i * t + j] = true;
                real += rows[i].Length;
            }
            values = tensor(v, new long[] { b, t, f }, device: device);
        }
        else
        {
            var ids = new long[b * t];
            var seg = new long[b * t];
            Array.Fill(ids, padId);
            for (int i = 0; i < b; i++)
            {
                var r = rows[i];
                for (int j = 0; j < r.Length; j++)
                {
                    ids[i * t + j] = r.Ids![j];
                    seg[i * t + j] = r.Segments![j];
                    mask[i * t + j] = true;
                }
                real += r.Length;
            }
            tokens = tensor(ids, new long[] { b, t }, device: device);
            segments = tensor(seg, new long[] { b, t }, device: device);
        }
        if (sideLength > 0)
        {
            var s = new float[b * sideLength];
            for (int i = 0; i < b; i++)
            {
                var r = rows[i].Side ?? throw new InvalidOperationException("A row has no side features.");
                if (r.Length != sideLength)
                    throw new InvalidOperationException($"A row has {r.Length} side features; the model was trained with {sideLength}.");
                for (int j = 0; j < sideLength; j++) s[i * sideLength + j] = float.IsNaN(r[j]) ? sideFill?[j] ?? 0 : r[j];
            }
            side = tensor(s, new long[] { b, sideLength }, device: device);
        }
        if (labels == LabelKind.Key) labelTensor = tensor(rows.Select(r => (long)r.Label).ToArray(), device: device);
        else if (labels == LabelKind.Float) labelTensor = tensor(rows.Select(r => r.Label).ToArray(), device: device);
        return new ModelBatch
        {
            Tokens = tokens, Segments = segments, Values = values, Side = side, Labels = labelTensor, Pixels = pixels,
            Mask = tensor(mask, new long[] { b, t }, device: device), RealTokens = real, HasPadding = real != (long)b * t,
        };
    }
}

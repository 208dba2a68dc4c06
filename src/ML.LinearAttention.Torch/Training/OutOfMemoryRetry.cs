using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Training;

/// <summary>
/// Retries a training batch that ran out of GPU memory as smaller pieces: the batch is split in two (then four, ...),
/// each piece's loss weighted by its share of the rows so the gradient is the full batch's, and later batches stay split
/// the same way (the memory does not come back). Logged once per halving. A single row that still does not fit is a
/// clear error (which suggests activation checkpointing only when <paramref name="checkpointing"/> is off). Only allocator failures are caught; every other error passes through untouched.
/// </summary>
internal sealed class OutOfMemoryRetry(ITrainingLog log, bool checkpointing = false)
{
    /// <summary>How many pieces each batch is cut into (1 = whole batches).</summary>
    public int Pieces { get; private set; } = 1;

    /// <summary>Number of out-of-memory retries so far.</summary>
    public int Retries { get; private set; }

    /// <summary>True for libtorch's out-of-memory errors (CUDA caching allocator, cuBLAS/cuDNN allocation failures).</summary>
    public static bool IsOutOfMemory(Exception e)
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            var m = x.Message;
            if (m.Contains("CUDA out of memory", StringComparison.OrdinalIgnoreCase) ||
                m.Contains("CUBLAS_STATUS_ALLOC_FAILED", StringComparison.Ordinal) ||
                m.Contains("CUDNN_STATUS_ALLOC_FAILED", StringComparison.Ordinal) ||
                m.Contains("out of memory", StringComparison.OrdinalIgnoreCase) && m.Contains("cuda", StringComparison.OrdinalIgnoreCase))
                return true;
        }
        return false;
    }

    /// <summary>
    /// Runs <paramref name="step"/> over <paramref name="batch"/> in <see cref="Pieces"/> pieces (row slices, views of the
    /// batch's tensors); each call gets a piece and its weight (piece rows / batch rows). On an out-of-memory error,
    /// <paramref name="clearGradients"/> runs, the pieces double and the whole batch starts again. Each call runs in its own
    /// dispose scope: tensors the step keeps must be moved out (<c>MoveToOuterDisposeScope</c>).
    /// </summary>
    public void Run(ModelBatch batch, Action<ModelBatch, double> step, Action clearGradients)
    {
        long rows = batch.Size;
        while (true)
        {
            long pieces = Math.Min(Pieces, rows);
            try
            {
                // One dispose scope per piece: a piece that runs out of memory frees its activations (and its autograd graph)
                // before the retry, instead of holding them until the batch ends. What a step keeps must leave the scope.
                if (pieces == 1)
                {
                    using (NewDisposeScope()) step(batch, 1.0);
                    return;
                }
                long size = (rows + pieces - 1) / pieces;
                for (long start = 0; start < rows; start += size)
                {
                    long n = Math.Min(size, rows - start);
                    using var scope = NewDisposeScope();
                    using var piece = Slice(batch, start, n);
                    step(piece, (double)n / rows);
                }
                return;
            }
            catch (Exception e) when (IsOutOfMemory(e))
            {
                clearGradients();
                long length = batch.Mask.shape[1];
                if (pieces >= rows)
                    throw new InvalidOperationException(
                        $"The GPU ran out of memory on a single row of {length:N0} tokens, so a smaller batch cannot help. Lower MaxSequenceLength or " +
                        $"ModelDimension / NumberOfLayers, {(checkpointing ? "" : "turn on ActivationCheckpointing, ")}use a GPU with more memory, or train on the CPU " +
                        "(MLContext.GpuDeviceId = null).", e);
                Pieces = (int)Math.Min(int.MaxValue, pieces * 2);
                Retries++;
                long newSize = (rows + Pieces - 1) / Pieces;
                log.Warning($"The GPU ran out of memory on a batch of {rows} rows × {length:N0} tokens; retrying it, and training on, with batches of " +
                            $"at most {newSize} rows (gradients are accumulated, so the optimizer step is unchanged). Lower BatchSize or MaxBatchTokens to avoid the retry. " +
                            $"({FirstLine(e.Message)})");
            }
        }
    }

    /// <summary>Rows [start, start + count) of a batch, as views.</summary>
    private static ModelBatch Slice(ModelBatch b, long start, long count) => new()
    {
        Tokens = b.Tokens?.narrow(0, start, count), Segments = b.Segments?.narrow(0, start, count), Values = b.Values?.narrow(0, start, count),
        Mask = b.Mask.narrow(0, start, count), Side = b.Side?.narrow(0, start, count), Labels = b.Labels?.narrow(0, start, count),
        Pixels = b.Pixels?.narrow(0, start, count),
        RealTokens = 0, HasPadding = true,
    };

    private static string FirstLine(string message)
    {
        int nl = message.IndexOf('\n');
        return nl < 0 ? message : message[..nl];
    }
}

using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;

/// <summary>
/// One AdamW step over many fp32 parameter tensors in three launches (multi_tensor_adamw.cu) instead of about nine
/// small kernels per tensor: the gradients' global norm (two kernels, the norm stays on the device), then the update
/// of every tensor, clipped by that norm, with the updated weights rounded into the bf16/fp16 copy the model runs in
/// the same pass. The tensors stay where they are: a device table of their addresses (one row per tensor) and a list
/// of 4096-element chunks (one block each) describe them, built once and reused while the addresses do not change.
/// </summary>
public static class FusedMultiTensorAdamW
{
    /// <summary>Environment variable that switches the kernel off ("0"): <see cref="FusedKernelOptions.MultiTensorAdamWEnabled"/>'s default.</summary>
    public const string EnableVariable = "ML_LINEARATTENTION_FUSED_ADAMW";

    /// <summary>Elements per chunk (CHUNK in the source) and int64 slots per tensor (TSLOTS).</summary>
    internal const int Chunk = 4096, Slots = 8;

    /// <summary>One parameter tensor: the fp32 master, its gradient, AdamW's two moments, the low-precision copy the model runs (or null), the weight decay.</summary>
    internal sealed record Entry(Tensor Param, Tensor Grad, Tensor ExpAvg, Tensor ExpAvgSq, Tensor? Low, double WeightDecay);

    /// <summary>Null when the kernel can update <paramref name="entries"/>, else why not.</summary>
    internal static string? UnavailableReason(IReadOnlyList<Entry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0) return "no parameter has a gradient.";
        var device = entries[0].Param.device;
        if (FusedLinearAttention.UnavailableReason(device) is { } reason) return reason;
        var lowType = entries.FirstOrDefault(e => e.Low is not null)?.Low?.dtype;
        if (lowType is { } lt && FusedLaunch.InType(lt) < 0) return $"the low-precision copy is {lt}, not bf16, fp16 or fp32.";
        foreach (var e in entries)
        {
            foreach (var t in new[] { e.Param, e.Grad, e.ExpAvg, e.ExpAvgSq })
            {
                if (t.dtype != ScalarType.Float32) return $"a parameter, gradient or moment is {t.dtype}, not fp32.";
                if (!t.is_contiguous()) return "a parameter, gradient or moment is not contiguous.";
                if (t.numel() != e.Param.numel() || t.device_index != e.Param.device_index || t.device_type != DeviceType.CUDA)
                    return "a parameter's gradient or moments differ from it in size or device.";
            }
            if (e.Param.device_index != device.index) return "the parameters are on more than one device.";
            if (e.Low is { } low && (low.dtype != lowType || !low.is_contiguous() || low.numel() != e.Param.numel() || low.device_index != e.Param.device_index))
                return "the low-precision copies differ in dtype, layout, size or device.";
            if ((e.Param.numel() + Chunk - 1) / Chunk > int.MaxValue) return "a parameter has more chunks than an int holds.";
        }
        return null;
    }

    /// <summary>The host table of <paramref name="entries"/>: <see cref="Slots"/> int64 per tensor (addresses, size, weight decay as float bits).</summary>
    internal static long[] Table(IReadOnlyList<Entry> entries)
    {
        var table = new long[entries.Count * Slots];
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            var row = table.AsSpan(i * Slots, Slots);
            row[0] = FusedLaunch.Ptr(e.Param); row[1] = FusedLaunch.Ptr(e.Grad); row[2] = FusedLaunch.Ptr(e.ExpAvg); row[3] = FusedLaunch.Ptr(e.ExpAvgSq);
            row[4] = FusedLaunch.Ptr(e.Low); row[5] = e.Param.numel(); row[6] = (uint)BitConverter.SingleToInt32Bits((float)e.WeightDecay);
        }
        return table;
    }

    /// <summary>(tensor, chunk) pairs, one per 4096 elements of each tensor, in table order.</summary>
    internal static int[] Chunks(long[] table)
    {
        var chunks = new List<int>();
        for (int t = 0; t < table.Length / Slots; t++)
            for (long c = 0; c * Chunk < table[t * Slots + 5]; c++) { chunks.Add(t); chunks.Add((int)c); }
        return chunks.ToArray();
    }

    private static readonly object Gate = new();
    private static readonly Dictionary<(int Device, int InType), (IntPtr SumSq, IntPtr Finish, IntPtr AdamW)> Kernels = new();

    private static (IntPtr SumSq, IntPtr Finish, IntPtr AdamW) Functions(int device, int inType)
    {
        var info = FusedModuleCache.Device(device);
        FusedModuleCache.MakeCurrent(info.Context);
        lock (Gate)
        {
            if (Kernels.TryGetValue((device, inType), out var f)) return f;
            var cubin = FusedModuleCache.Compile($"sm_{info.Major}{info.Minor}", FusedModuleCache.Tiling.For(16, 16), inType, FusedFeatureMap.Identity,
                mma: false, verbose: false, out _, CudaSources.MultiTensorAdamW);
            var module = FusedModuleCache.LoadModule(cubin);
            f = (FusedModuleCache.Function(module, "mt_grad_sumsq", 32 * 4), FusedModuleCache.Function(module, "mt_grad_sumsq_finish", 256 * 8),
                FusedModuleCache.Function(module, "mt_adamw", 0));
            return Kernels[(device, inType)] = f;
        }
    }

    /// <summary>
    /// The device side of one set of tensors: the table, the chunk list and the norm's scratch, uploaded once (a blocking
    /// copy, so only when the tensors' addresses change; each step then launches with no host synchronisation).
    /// </summary>
    internal sealed class Plan : IDisposable
    {
        private readonly long[] _hostTable;
        private readonly Tensor _table, _chunks, _partial, _sumSq;
        private readonly int _chunkCount, _device;
        private readonly (IntPtr SumSq, IntPtr Finish, IntPtr AdamW) _kernels;

        public Plan(IReadOnlyList<Entry> entries)
        {
            if (UnavailableReason(entries) is { } reason) throw new InvalidOperationException("The multi-tensor AdamW cannot run: " + reason);
            _hostTable = Table(entries);
            var chunks = Chunks(_hostTable);
            _chunkCount = chunks.Length / 2;
            var device = entries[0].Param.device;
            _device = device.index < 0 ? 0 : device.index;
            var low = entries.FirstOrDefault(e => e.Low is not null)?.Low;
            _kernels = Functions(_device, low is null ? 0 : FusedLaunch.InType(low.dtype));
            // The plan lives across steps; a training step's dispose scope must not take its buffers with it.
            using (torch.NewDisposeScope())
            {
                _table = torch.tensor(_hostTable).to(device).DetachFromDisposeScope();
                _chunks = torch.tensor(chunks).to(device).DetachFromDisposeScope();
                _partial = torch.empty(_chunkCount, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
                _sumSq = torch.empty(1, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
            }
        }

        /// <summary>True when <paramref name="table"/> (<see cref="Table"/> of this step's tensors) is the one this plan was built for.</summary>
        public bool Matches(long[] table) => table.AsSpan().SequenceEqual(_hostTable);

        /// <summary>
        /// One step: clipping to <paramref name="maxNorm"/> (none when null) and AdamW with the bias corrections of step
        /// <paramref name="step"/> (every tensor's count after this step).
        /// </summary>
        public void Step(double lr, double beta1, double beta2, double eps, long step, double? maxNorm)
        {
            FusedModuleCache.MakeCurrent(FusedModuleCache.Device(_device).Context);
            long table = FusedLaunch.Ptr(_table), chunks = FusedLaunch.Ptr(_chunks);
            if (maxNorm is not null)
            {
                FusedModuleCache.Launch(_kernels.SumSq, _chunkCount, 1, 32 * 4, table, chunks, FusedLaunch.Ptr(_partial));
                FusedModuleCache.Launch(_kernels.Finish, 1, 1, 256 * 8, FusedLaunch.Ptr(_partial), _chunkCount, FusedLaunch.Ptr(_sumSq));
            }
            double stepSize = lr / (1 - Math.Pow(beta1, step)), invSqrtBc2 = 1 / Math.Sqrt(1 - Math.Pow(beta2, step));
            FusedModuleCache.Launch(_kernels.AdamW, _chunkCount, 1, 0, table, chunks, maxNorm is null ? 0 : FusedLaunch.Ptr(_sumSq),
                Bits(maxNorm ?? 0), Bits(lr), Bits(beta1), Bits(beta2), Bits(1 - beta1), Bits(1 - beta2), Bits(eps), Bits(stepSize), Bits(invSqrtBc2));
        }

        /// <summary>A float kernel argument in its 8-byte slot (the kernel reads the low 4 bytes).</summary>
        private static long Bits(double value) => (uint)BitConverter.SingleToInt32Bits((float)value);

        public void Dispose()
        {
            _table.Dispose(); _chunks.Dispose(); _partial.Dispose(); _sumSq.Dispose();
        }
    }
}

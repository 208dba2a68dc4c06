using System.Globalization;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// <see cref="ICollectives"/> over NCCL for CUDA tensors, one process per GPU. Collectives are queued on the legacy
/// default CUDA stream (stream 0): TorchSharp never sets a stream, so libtorch's kernels run there too and every
/// collective is ordered after the kernels that produced its input and before those that read its output, with no
/// extra synchronisation (and, for the same reason, no overlap of communication with compute on that stream).
/// <para>Rendezvous: rank 0 makes the 128-byte unique id and writes it (hex) to a file every rank can read (one host:
/// a temporary path; several hosts: a shared file system, or a launcher that passes the id in
/// <see cref="IdEnvironmentVariable"/>). NCCL then picks NVLink, PCIe, InfiniBand or sockets by itself, so the same code
/// runs on more GPUs and hosts.</para>
/// </summary>
public sealed class NcclCollectives : ICollectives
{
    /// <summary>Environment variable holding the unique id as 256 hex digits (instead of a file).</summary>
    public const string IdEnvironmentVariable = "ML_LINEARATTENTION_NCCL_ID";

    private static readonly IntPtr Stream = IntPtr.Zero; // legacy default stream, the one libtorch uses under TorchSharp
    private readonly int _deviceIndex;
    private IntPtr _comm;
    private readonly List<(IntPtr Start, IntPtr End)> _timed = new();

    /// <summary>Joins the group with an id obtained out of band (see <see cref="CreateUniqueId"/>).</summary>
    public NcclCollectives(int rank, int worldSize, NcclUniqueId id, int deviceIndex = 0)
    {
        CollectiveChecks.RankAndWorld(rank, worldSize);
        EnsureCuda(deviceIndex);
        Rank = rank; WorldSize = worldSize; _deviceIndex = deviceIndex;
        Device = new Device(DeviceType.CUDA, deviceIndex);
        CudaRuntime.SetDevice(deviceIndex);
        _comm = NcclNative.CommInitRank(worldSize, id, rank);
    }

    /// <summary>
    /// Joins the group through a rendezvous file: rank 0 writes a fresh id to <paramref name="idFile"/> (atomically);
    /// the other ranks wait up to <paramref name="timeout"/> for it. Use a new path per run (a stale file from an
    /// earlier run would be read as this run's id). If <see cref="IdEnvironmentVariable"/> is set, it is used instead.
    /// </summary>
    public static NcclCollectives Join(int rank, int worldSize, string idFile, TimeSpan? timeout = null, int deviceIndex = 0)
    {
        CollectiveChecks.RankAndWorld(rank, worldSize);
        EnsureCuda(deviceIndex);
        var fromEnv = Environment.GetEnvironmentVariable(IdEnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnv)) return new NcclCollectives(rank, worldSize, NcclUniqueId.FromArray(Convert.FromHexString(fromEnv.Trim())), deviceIndex);
        ArgumentException.ThrowIfNullOrEmpty(idFile);
        if (rank == 0)
        {
            var id = CreateUniqueId();
            string tmp = idFile + ".tmp" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
            File.WriteAllText(tmp, Convert.ToHexString(id.ToArray()));
            File.Move(tmp, idFile, overwrite: true);
            return new NcclCollectives(rank, worldSize, id, deviceIndex);
        }
        var limit = DateTime.UtcNow + (timeout ?? TimeSpan.FromMinutes(2));
        while (!File.Exists(idFile))
        {
            if (DateTime.UtcNow > limit) throw new TimeoutException($"Rank {rank}: rank 0 did not write the NCCL id file '{idFile}' in time (did rank 0 start, and do all ranks see the same path?).");
            Thread.Sleep(20);
        }
        return new NcclCollectives(rank, worldSize, NcclUniqueId.FromArray(Convert.FromHexString(File.ReadAllText(idFile).Trim())), deviceIndex);
    }

    /// <summary>A fresh unique id (call on one rank only, then hand it to all).</summary>
    public static NcclUniqueId CreateUniqueId() => NcclNative.GetUniqueId();

    /// <summary>NCCL's version code (e.g. 22703 for 2.27.3).</summary>
    public static int Version => NcclNative.Version();

    /// <summary>True when libnccl can be loaded; otherwise <paramref name="why"/> says what to do.</summary>
    public static bool IsAvailable(out string? why) => NcclNative.IsAvailable(out why);

    public int Rank { get; }
    public int WorldSize { get; }
    public Device Device { get; }

    /// <summary>Record CUDA events around every collective so that <see cref="TakeCommunicationMilliseconds"/> can report their stream time.</summary>
    public bool TimeCommunication { get; set; }

    /// <summary>GPU time spent in collectives since the last call (waits for them to finish; only with <see cref="TimeCommunication"/>).</summary>
    public double TakeCommunicationMilliseconds()
    {
        double ms = 0;
        foreach (var (s, e) in _timed) ms += CudaRuntime.ElapsedAndFree(s, e);
        _timed.Clear();
        return ms;
    }

    public void AllReduceSum(Tensor tensor)
    {
        Prepare(tensor, nameof(AllReduceSum));
        var p = NativeTensorAccess.DataPointer(tensor);
        Timed(() => NcclNative.AllReduce(p, p, (ulong)tensor.numel(), NcclNative.DataType(tensor.dtype), NcclNative.Sum, _comm, Stream));
    }

    public Tensor AllGather(Tensor tensor)
    {
        Prepare(tensor, nameof(AllGather));
        var output = empty(new[] { (long)WorldSize }.Concat(tensor.shape).ToArray(), tensor.dtype, tensor.device);
        var send = NativeTensorAccess.DataPointer(tensor);
        var recv = NativeTensorAccess.DataPointer(output);
        Timed(() => NcclNative.AllGather(send, recv, (ulong)tensor.numel(), NcclNative.DataType(tensor.dtype), _comm, Stream));
        return output;
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        Prepare(tensor, nameof(Broadcast));
        CollectiveChecks.Root(root, WorldSize);
        var p = NativeTensorAccess.DataPointer(tensor);
        Timed(() => NcclNative.Broadcast(p, p, (ulong)tensor.numel(), NcclNative.DataType(tensor.dtype), root, _comm, Stream));
    }

    /// <summary>Reduce-scatter (sum): <paramref name="input"/> [WorldSize·n] → this rank's [n] slice of the sum.</summary>
    public Tensor ReduceScatterSum(Tensor input)
    {
        Prepare(input, nameof(ReduceScatterSum));
        if (input.numel() % WorldSize != 0) throw new ArgumentException($"ReduceScatterSum needs a size divisible by the world size {WorldSize} (got {input.numel()}).", nameof(input));
        var output = empty(new[] { input.numel() / WorldSize }, input.dtype, input.device);
        var send = NativeTensorAccess.DataPointer(input);
        var recv = NativeTensorAccess.DataPointer(output);
        Timed(() => NcclNative.ReduceScatter(send, recv, (ulong)output.numel(), NcclNative.DataType(input.dtype), NcclNative.Sum, _comm, Stream));
        return output;
    }

    public void Barrier()
    {
        using var one = ones(1, device: Device);
        AllReduceSum(one);
        cuda.synchronize(Device);
        int error = NcclNative.CommGetAsyncError(_comm);
        if (error != 0) throw new InvalidOperationException($"NCCL reported an asynchronous error: {NcclNative.ErrorString(error)}.");
    }

    private void Prepare(Tensor tensor, string what)
    {
        ObjectDisposedException.ThrowIf(_comm == IntPtr.Zero, this);
        CollectiveChecks.Tensor(tensor, Device, what);
        if (tensor.device.index != _deviceIndex && tensor.device.index >= 0)
            throw new ArgumentException($"{what}: the tensor is on {tensor.device}, but this rank's NCCL communicator is on cuda:{_deviceIndex}.", nameof(tensor));
    }

    private void Timed(Action collective)
    {
        if (!TimeCommunication) { collective(); return; }
        var start = CudaRuntime.RecordEvent(Stream);
        collective();
        _timed.Add((start, CudaRuntime.RecordEvent(Stream)));
    }

    private static void EnsureCuda(int deviceIndex)
    {
        TorchRuntime.EnsureLoaded();
        if (!torch.cuda.is_available())
            throw new NotSupportedException("NCCL collectives need CUDA, which is not available here (no GPU, or a CPU-only libtorch). " +
                                            "On the CPU use ThreadCollectives (ranks as threads of one process).");
        if (deviceIndex < 0 || deviceIndex >= torch.cuda.device_count())
            throw new ArgumentOutOfRangeException(nameof(deviceIndex), deviceIndex, $"This process sees {torch.cuda.device_count()} CUDA device(s); with one process per GPU set CUDA_VISIBLE_DEVICES per process and use device 0.");
        if (!NcclNative.IsAvailable(out var why)) throw new DllNotFoundException(why);
    }

    /// <summary>Destroys the communicator (after the queued work finishes).</summary>
    public void Dispose()
    {
        if (_comm == IntPtr.Zero) return;
        foreach (var (s, e) in _timed) CudaRuntime.ElapsedAndFree(s, e);
        _timed.Clear();
        NcclNative.CommDestroy(_comm);
        _comm = IntPtr.Zero;
    }

    /// <summary>Ends the communicator at once without waiting (after an error on another rank).</summary>
    public void Abort()
    {
        if (_comm == IntPtr.Zero) return;
        NcclNative.CommAbort(_comm);
        _comm = IntPtr.Zero;
    }
}

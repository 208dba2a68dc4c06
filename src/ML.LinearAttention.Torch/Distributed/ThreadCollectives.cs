using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Distributed;

/// <summary>
/// In-process collectives on the CPU: the ranks are threads of one process that share a <see cref="Group"/>. Used by
/// the tests (data and sequence parallelism without a GPU) and usable as a CPU fallback; it is not a GPU transport
/// (<see cref="NcclCollectives"/> is). Results are exact and identical on every rank: sums are taken in rank order by
/// each rank over the same inputs. A rank that does not arrive within <see cref="Group.Timeout"/> makes the others
/// fail with a clear error instead of waiting forever.
/// </summary>
public sealed class ThreadCollectives : ICollectives
{
    /// <summary>The shared state of one group of thread ranks; create one, then give each thread <see cref="ForRank"/>.</summary>
    public sealed class Group
    {
        private readonly Barrier _barrier;
        private readonly Tensor?[] _slots;

        public Group(int worldSize)
        {
            CollectiveChecks.RankAndWorld(0, worldSize);
            WorldSize = worldSize;
            _barrier = new Barrier(worldSize);
            _slots = new Tensor?[worldSize];
        }

        public int WorldSize { get; }

        /// <summary>How long a rank waits for the others at a collective (default 2 minutes).</summary>
        public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(2);

        /// <summary>The collectives of rank <paramref name="rank"/> (call from that rank's thread).</summary>
        public ThreadCollectives ForRank(int rank)
        {
            CollectiveChecks.RankAndWorld(rank, WorldSize);
            return new ThreadCollectives(this, rank);
        }

        /// <summary>Deposits this rank's tensor, waits for all, lets <paramref name="read"/> see every slot, then waits again so the slots can be reused.</summary>
        internal void Exchange(int rank, Tensor? mine, string what, Action<Tensor?[]> read)
        {
            _slots[rank] = mine;
            Wait(what);
            try { read(_slots); }
            finally { Wait(what); }
            _slots[rank] = null;
        }

        internal void Wait(string what)
        {
            if (!_barrier.SignalAndWait(Timeout))
                throw new TimeoutException($"{what}: not every rank of the {WorldSize}-thread group arrived within {Timeout.TotalSeconds:F0} s " +
                                           "(a rank failed or called a different sequence of collectives).");
        }
    }

    private readonly Group _group;

    private ThreadCollectives(Group group, int rank) { _group = group; Rank = rank; }

    /// <summary>Runs <paramref name="body"/> on <paramref name="worldSize"/> threads, one per rank, and rethrows the first failure.</summary>
    public static void Run(int worldSize, Action<ThreadCollectives> body, TimeSpan? timeout = null)
    {
        var group = new Group(worldSize) { Timeout = timeout ?? TimeSpan.FromMinutes(2) };
        var errors = new Exception?[worldSize];
        var threads = Enumerable.Range(0, worldSize).Select(r => new Thread(() =>
        {
            try { using var c = group.ForRank(r); body(c); }
            catch (Exception e) { errors[r] = e; }
        }, 16 << 20) { Name = $"rank {r}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        // A rank's own error comes before the timeouts it caused in the others.
        var first = errors.FirstOrDefault(e => e is not null and not TimeoutException) ?? errors.FirstOrDefault(e => e is not null);
        if (first is not null) throw new AggregateException($"A rank of the {worldSize}-thread group failed: {first.Message}", first);
    }

    public int Rank { get; }
    public int WorldSize => _group.WorldSize;
    public Device Device => CPU;

    public void AllReduceSum(Tensor tensor)
    {
        CollectiveChecks.Tensor(tensor, CPU, nameof(AllReduceSum));
        Tensor? sum = null;
        using (no_grad())
            _group.Exchange(Rank, tensor, nameof(AllReduceSum), slots =>
            {
                Check(slots, tensor, nameof(AllReduceSum));
                sum = slots[0]!.clone();
                for (int r = 1; r < slots.Length; r++) sum.add_(slots[r]!);
            });
        using (no_grad()) tensor.copy_(sum!);
        sum!.Dispose();
    }

    public Tensor AllGather(Tensor tensor)
    {
        CollectiveChecks.Tensor(tensor, CPU, nameof(AllGather));
        Tensor? stacked = null;
        using (no_grad())
            _group.Exchange(Rank, tensor, nameof(AllGather), slots =>
            {
                Check(slots, tensor, nameof(AllGather));
                stacked = stack(slots.Select(s => s!).ToArray());
            });
        return stacked!;
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        CollectiveChecks.Tensor(tensor, CPU, nameof(Broadcast));
        CollectiveChecks.Root(root, WorldSize);
        Tensor? copy = null;
        _group.Exchange(Rank, tensor, nameof(Broadcast), slots =>
        {
            Check(slots, tensor, nameof(Broadcast));
            if (Rank != root) using (no_grad()) copy = slots[root]!.clone();
        });
        if (copy is not null) { using (no_grad()) tensor.copy_(copy); copy.Dispose(); }
    }

    public void Barrier() => _group.Wait(nameof(Barrier));

    private void Check(Tensor?[] slots, Tensor mine, string what)
    {
        for (int r = 0; r < slots.Length; r++)
            if (slots[r] is not { } s || !s.shape.SequenceEqual(mine.shape) || s.dtype != mine.dtype)
                throw new InvalidOperationException($"{what}: rank {r} passed {(slots[r] is null ? "nothing" : $"[{string.Join(", ", slots[r]!.shape)}] {slots[r]!.dtype}")} " +
                                                    $"but rank {Rank} passed [{string.Join(", ", mine.shape)}] {mine.dtype}; every rank must pass the same shape and dtype.");
    }

    public void Dispose() { }
}

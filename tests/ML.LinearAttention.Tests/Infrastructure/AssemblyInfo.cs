using Xunit;

// libtorch's RNG and thread pool are process-wide: tests run one at a time so seeds mean what they say
// and CPU threads are not oversubscribed on small CI machines.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

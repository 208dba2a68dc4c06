using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Tests.Infrastructure;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Distributed;

/// <summary>The in-process CPU collectives (ranks = threads), bad options, and NCCL's clear error where it cannot run.</summary>
public sealed class ThreadCollectivesTests
{
    [Fact]
    public void AllReduceAllGatherAndBroadcastGiveTheSameExactResultOnEveryRank()
    {
        Torch.Seed(1);
        const int world = 3;
        var inputs = Enumerable.Range(0, world).Select(_ => randn(2, 5)).ToArray();
        var expectedSum = inputs[0] + inputs[1] + inputs[2];
        var sums = new Tensor[world];
        var gathers = new Tensor[world];
        var broadcasts = new Tensor[world];
        ThreadCollectives.Run(world, c =>
        {
            var mine = inputs[c.Rank].clone();
            c.AllReduceSum(mine);
            sums[c.Rank] = mine;
            gathers[c.Rank] = c.AllGather(inputs[c.Rank]);
            var b = full(new long[] { 4 }, (double)c.Rank);
            c.Broadcast(b, root: 2);
            broadcasts[c.Rank] = b;
            c.Barrier();
            Assert.Equal(world, c.WorldSize);
        });
        for (int r = 0; r < world; r++)
        {
            Assert.True(sums[r].eq(sums[0]).all().item<bool>(), "every rank holds bit-identical sums");
            Assert.True(sums[r].allclose(expectedSum, 1e-6, 1e-6));
            Assert.Equal(new long[] { world, 2, 5 }, gathers[r].shape);
            for (int j = 0; j < world; j++) Assert.True(gathers[r][j].eq(inputs[j]).all().item<bool>());
            Assert.True(broadcasts[r].eq(2).all().item<bool>());
        }
    }

    [Fact]
    public void MismatchedShapesAndBadOptionsAreClearErrors()
    {
        var e = Assert.Throws<AggregateException>(() => ThreadCollectives.Run(2, c => c.AllReduceSum(zeros(c.Rank + 1))));
        Assert.Contains("same shape", e.InnerException!.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ThreadCollectives.Group(0));
        var group = new ThreadCollectives.Group(2);
        var rank = Assert.Throws<ArgumentOutOfRangeException>(() => group.ForRank(2));
        Assert.Contains("0 … 1", rank.Message);
        var root = Assert.Throws<AggregateException>(() => ThreadCollectives.Run(1, c => c.Broadcast(zeros(2), root: 3)));
        Assert.Contains("root", root.InnerException!.Message);
        var strided = Assert.Throws<AggregateException>(() => ThreadCollectives.Run(1, c => c.AllReduceSum(zeros(3, 4).t())));
        Assert.Contains("contiguous", strided.InnerException!.Message);
        var missing = Assert.Throws<AggregateException>(() => ThreadCollectives.Run(2, c => { if (c.Rank == 0) c.Barrier(); }, TimeSpan.FromMilliseconds(300)));
        Assert.Contains("not every rank", missing.InnerException!.Message);
        var opts = new DistributedOptions { Collectives = new ThreadCollectives.Group(1).ForRank(0), BucketMegabytes = 0 };
        Assert.Contains("BucketMegabytes", Assert.Throws<ArgumentOutOfRangeException>(opts.Validate).Message);
    }

    [Fact]
    public void NcclOnAMachineWithoutCudaIsAClearError()
    {
        Torch.Seed(1);
        if (torch.cuda.is_available()) return; // the GPU machine runs `bench multigpu --verify` instead
        var e = Assert.ThrowsAny<Exception>(() => NcclCollectives.Join(0, 2, Path.Combine(Path.GetTempPath(), $"nccl-{Guid.NewGuid():N}.id")));
        Assert.Contains("CUDA", e.Message);
        Assert.Contains("ThreadCollectives", e.Message);
        if (!NcclCollectives.IsAvailable(out var why))
        {
            Assert.Contains("libnccl.so.2", why);
            Assert.Contains(NcclNative.EnvironmentOverride, why);
        }
    }
}

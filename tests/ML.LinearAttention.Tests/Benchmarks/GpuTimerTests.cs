using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>GpuTimer's rule for a timing with idle gaps, on the figures the H200 gave (the timer itself needs a GPU).</summary>
public class GpuTimerTests
{
    [Fact]
    public void Runs_enqueued_within_the_hold_leave_no_gaps()
        // relu fused mma, T = 512: 50 runs enqueued in 25 ms behind a 50 ms hold, GPU 0.5 ms per run.
        => Assert.False(GpuTimer.LeftGaps(hostMs: 25, holdMs: 50, tailMs: 50, gpuMs: 25, repetitions: 50));

    [Fact]
    public void A_host_held_up_by_a_full_launch_queue_leaves_no_gaps()
        // transnormer: the host took 6.4 ms per run (waiting on the queue), the GPU still had many runs queued at the end.
        => Assert.False(GpuTimer.LeftGaps(hostMs: 320, holdMs: 50, tailMs: 30, gpuMs: 81, repetitions: 50));

    [Fact]
    public void A_host_slower_than_the_gpu_or_a_synchronizing_step_leaves_gaps()
    {
        // deltanet, T = 32768: the host needed 490 ms per run for 124 ms of GPU work; the queue ran dry before the end.
        Assert.True(GpuTimer.LeftGaps(hostMs: 1470, holdMs: 1225, tailMs: 20, gpuMs: 371, repetitions: 3));
        // A step that synchronizes waits out the hold, then every run follows the host: nothing is left queued.
        Assert.True(GpuTimer.LeftGaps(hostMs: 80, holdMs: 50, tailMs: 0.1, gpuMs: 30, repetitions: 10));
    }
}

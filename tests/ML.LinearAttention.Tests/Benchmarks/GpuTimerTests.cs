using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Benchmarks;

/// <summary>GpuTimer's rule for a timing with idle gaps, on the figures the H200 gave (the timer itself needs a GPU).</summary>
public class GpuTimerTests
{
    [Fact]
    public void RunsEnqueuedWithinTheHoldLeaveNoGaps()
        // relu fused mma, T = 512: every run enqueued well within the hold, so the GPU never waited for the host.
        => Assert.False(GpuTimer.LeftGaps(hostMs: 25, holdMs: 50, tailMs: 50, gpuMs: 25, repetitions: 50));

    [Fact]
    public void AHostHeldUpByAFullLaunchQueueLeavesNoGaps()
        // transnormer: the host was slower than the GPU only because it waited on a full queue; runs were still queued at the end.
        => Assert.False(GpuTimer.LeftGaps(hostMs: 320, holdMs: 50, tailMs: 30, gpuMs: 81, repetitions: 50));

    [Fact]
    public void AHostSlowerThanTheGpuOrASynchronizingStepLeavesGaps()
    {
        // deltanet, T = 32768: the host needed several times the GPU's time per run; the queue ran dry before the end.
        Assert.True(GpuTimer.LeftGaps(hostMs: 1470, holdMs: 1225, tailMs: 20, gpuMs: 371, repetitions: 3));
        // A step that synchronizes waits out the hold, then every run follows the host: nothing is left queued.
        Assert.True(GpuTimer.LeftGaps(hostMs: 80, holdMs: 50, tailMs: 0.1, gpuMs: 30, repetitions: 10));
    }
}

using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;

namespace Microsoft.ML.LinearAttention.Tests.Runtime;

public class DevicePolicyTests
{
    private sealed class FakeProbe : ICudaProbe
    {
        public bool IsAvailable { get; init; }
        public int DeviceCount { get; init; }
        public bool CudaLibtorchPresent { get; init; }
    }

    private static readonly FakeProbe NoCuda = new() { IsAvailable = false, DeviceCount = 0, CudaLibtorchPresent = false };
    private static readonly FakeProbe TwoGpus = new() { IsAvailable = true, DeviceCount = 2, CudaLibtorchPresent = true };

    [Fact]
    public void NullGpuIdMeansCpuEvenWhenCudaExists()
    {
        var warnings = new List<string>();
        var device = DevicePolicy.Resolve(null, fallbackToCpu: false, TwoGpus, warnings.Add);
        Assert.Equal(DeviceType.CPU, device.type);
        Assert.Empty(warnings);
    }

    [Fact]
    public void GpuIdWithCudaHonoursTheIndex()
    {
        var device = DevicePolicy.Resolve(1, fallbackToCpu: false, TwoGpus, _ => { });
        Assert.Equal(DeviceType.CUDA, device.type);
        Assert.Equal(1, device.index);
    }

    [Fact]
    public void GpuIdWithoutCudaAndNoFallbackThrowsNamingTheMissingPackage()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => DevicePolicy.Resolve(0, fallbackToCpu: false, NoCuda, _ => { }));
        Assert.Contains("FallbackToCpu is false", ex.Message);
        Assert.Contains("TorchSharp-cuda-linux", ex.Message);
        Assert.Contains("LD_LIBRARY_PATH", ex.Message);
    }

    [Fact]
    public void CudaBuildWithoutAUsableGpuPointsAtTheDriver()
    {
        var probe = new FakeProbe { IsAvailable = false, CudaLibtorchPresent = true };
        var ex = Assert.Throws<InvalidOperationException>(() => DevicePolicy.Resolve(0, fallbackToCpu: false, probe, _ => { }));
        Assert.Contains("nvidia-smi", ex.Message);
    }

    [Fact]
    public void GpuIdWithoutCudaWithFallbackUsesCpuAndWarns()
    {
        var warnings = new List<string>();
        var device = DevicePolicy.Resolve(0, fallbackToCpu: true, NoCuda, warnings.Add);
        Assert.Equal(DeviceType.CPU, device.type);
        var warning = Assert.Single(warnings);
        Assert.Contains("Running on the CPU", warning);
    }

    [Fact]
    public void GpuIndexBeyondTheVisibleDevicesIsAnErrorOrAWarnedFallback()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => DevicePolicy.Resolve(5, fallbackToCpu: false, TwoGpus, _ => { }));
        Assert.Contains("only 2 CUDA device(s)", ex.Message);
        var warnings = new List<string>();
        Assert.Equal(DeviceType.CPU, DevicePolicy.Resolve(5, fallbackToCpu: true, TwoGpus, warnings.Add).type);
        Assert.Single(warnings);
    }

    [Fact]
    public void NegativeGpuIdIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DevicePolicy.Resolve(-1, fallbackToCpu: true, TwoGpus, _ => { }));
    }

    [Fact]
    public void RealMLContextOnTheCpuBackend()
    {
        var ml = new MLContext(seed: 1);
        Assert.Equal(DeviceType.CPU, DevicePolicy.Resolve(ml).type);

        // This test project runs on TorchSharp-cpu: asking for a GPU without fallback must explain the fix.
        ml.GpuDeviceId = 0;
        ml.FallbackToCpu = false;
        if (!torch.cuda.is_available())
        {
            var ex = Assert.Throws<InvalidOperationException>(() => DevicePolicy.Resolve(ml));
            Assert.Contains("TorchSharp-cuda-linux", ex.Message);

            ml.FallbackToCpu = true;
            var log = new List<string>();
            ml.Log += (_, e) => { if (e.Message.Contains("Running on the CPU")) log.Add(e.Message); };
            Assert.Equal(DeviceType.CPU, DevicePolicy.Resolve(ml).type);
            Assert.NotEmpty(log);
        }
    }

    [Fact]
    public void CpuThreadsDefaultToAllCoresAndAreConfigurable()
    {
        TorchRuntime.SetCpuThreads(1);
        Assert.Equal(1, torch.get_num_threads());
        TorchRuntime.SetCpuThreads(null);
        Assert.Equal(Environment.ProcessorCount, torch.get_num_threads());
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchRuntime.SetCpuThreads(0));
    }
}

using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Runtime;

public class DeviceConstantsTests
{
    [Fact]
    public void OneTensorPerNameValuesAndDeviceThatOutlivesTheCallersScope()
    {
        TorchRuntime.EnsureLoaded();
        Tensor first;
        using (NewDisposeScope())
            first = DeviceConstants.Get(DeviceConstants.KeyOf("test slopes", new[] { 0.5f, 0.25f }), torch.CPU, () => new[] { 0.5f, 0.25f });
        Assert.False(first.IsInvalid);                       // the caller's dispose scope did not take it
        Assert.Equal(new[] { 0.5f, 0.25f }, first.data<float>().ToArray());
        int made = 0;
        Assert.Same(first, DeviceConstants.Get(DeviceConstants.KeyOf("test slopes", new[] { 0.5f, 0.25f }), torch.CPU, () => { made++; return new[] { 0.5f, 0.25f }; }));
        Assert.Equal(0, made);                                // a hit does not build the values again
        var other = DeviceConstants.Get(DeviceConstants.KeyOf("test slopes", new[] { 0.5f, 0.125f }), torch.CPU, () => new[] { 0.5f, 0.125f });
        Assert.NotSame(first, other);                         // values are part of the key
        Assert.Equal(new[] { 0.5f, 0.125f }, other.data<float>().ToArray());
        Assert.NotSame(first, DeviceConstants.Get(DeviceConstants.KeyOf("other", new[] { 0.5f, 0.25f }), torch.CPU, () => new[] { 0.5f, 0.25f }));
        Assert.False(first.requires_grad);
    }
}

using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Runtime;

public class DeviceConstantsTests
{
    [Fact]
    public void One_tensor_per_name_values_and_device_that_outlives_the_callers_scope()
    {
        TorchRuntime.EnsureLoaded();
        Tensor first;
        using (NewDisposeScope())
            first = DeviceConstants.Get("test slopes", new[] { 0.5f, 0.25f }, torch.CPU);
        Assert.False(first.IsInvalid);                       // the caller's dispose scope did not take it
        Assert.Equal(new[] { 0.5f, 0.25f }, first.data<float>().ToArray());
        Assert.Same(first, DeviceConstants.Get("test slopes", new[] { 0.5f, 0.25f }, torch.CPU));
        Assert.NotSame(first, DeviceConstants.Get("test slopes", new[] { 0.5f, 0.125f }, torch.CPU));   // values are part of the key
        Assert.NotSame(first, DeviceConstants.Get("other", new[] { 0.5f, 0.25f }, torch.CPU));
        Assert.False(first.requires_grad);
    }
}

using System.Runtime.InteropServices;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Runtime;

public class NativeTensorAccessTests
{
    [Fact]
    public void DataPointerAddressesTheTensorsElements()
    {
        using var t = torch.arange(0, 6, dtype: ScalarType.Float32).view(2, 3);
        var values = new float[6];
        Marshal.Copy(NativeTensorAccess.DataPointer(t), values, 0, 6);
        Assert.Equal(new float[] { 0, 1, 2, 3, 4, 5 }, values);

        using var row = t.narrow(0, 1, 1).contiguous();
        Marshal.Copy(NativeTensorAccess.DataPointer(row), values, 0, 3);
        Assert.Equal(new float[] { 3, 4, 5 }, values[..3]);
    }

    [Fact]
    public void NonContiguousTensorIsRefusedWithTheFix()
    {
        using var t = torch.zeros(3, 4).t();
        var e = Assert.Throws<ArgumentException>(() => NativeTensorAccess.DataPointer(t));
        Assert.Contains("contiguous()", e.Message);
    }
}

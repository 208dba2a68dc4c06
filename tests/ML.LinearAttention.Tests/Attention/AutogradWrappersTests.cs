using Microsoft.ML.LinearAttention.Attention.Kernels.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

public sealed class AutogradWrappersTests
{
    [Fact]
    public void ReturnedGradientsOutliveTheirScopeUntilTheNextCallAndTheUpstreamWrapperIsReleased()
    {
        AutogradWrappers.ReleaseReturned();
        var upstream = torch.ones(3);
        List<Tensor> result;
        Tensor dq, dk;
        using (NewDisposeScope())
        {
            dq = torch.full(3, 2.0f);
            dk = torch.full(3, 3.0f);
            result = AutogradWrappers.Return(upstream, dq, dk);
        }
        Assert.Equal(3, result.Count);
        Assert.Same(dq, result[0]);
        Assert.Same(dk, result[1]);
        Assert.Null(result[2]);                            // the non-tensor argument of the function
        Assert.True(upstream.IsInvalid);
        Assert.False(dq.IsInvalid || dk.IsInvalid);       // libtorch copies them after backward returns
        Assert.Equal(2.0f, dq[0].item<float>());

        AutogradWrappers.ReleaseReturned();                 // the next forward or backward call
        Assert.True(dq.IsInvalid && dk.IsInvalid);
    }
}

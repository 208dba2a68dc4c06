using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Tests.Attention;

/// <summary>
/// The joint q/k/v projection projected mixers run on CUDA (one GEMM with the stacked weights): the same q, k, v and
/// the same gradients of x and of every weight and bias as the three separate projections, and the cases it declines.
/// </summary>
public class JointProjectionTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void GivesTheSeparateProjectionsValuesAndGradients(bool bias, bool copyValues)
    {
        torch.manual_seed(3);
        var mixer = new LinearMixer(new MixerConfig(48, 4) { ProjectionBias = bias }, new LinearMixerOptions());
        var joint = mixer.JointProjections();
        Assert.NotNull(joint);
        Assert.Equal(new long[] { 144, 48 }, joint!.Value.Weight.shape);
        Assert.Equal(bias, joint.Value.Bias is not null);

        var x = torch.randn(2, 7, 48).requires_grad_();
        var upstream = Enumerable.Range(0, 3).Select(_ => torch.randn(2, 4, 7, 12)).ToArray();
        var parameters = mixer.named_parameters().Where(p => p.name.Split('.')[0] is "q_proj" or "k_proj" or "v_proj").Select(p => p.parameter).ToArray();
        var inputs = new[] { x }.Concat(parameters).ToArray();

        var (q, k, v) = ProjectedMixer.ProjectJointly(x, joint.Value.Weight, joint.Value.Bias, 4, copyValues);
        Assert.Equal(copyValues, v.is_contiguous());
        var jointGrads = torch.autograd.grad(new[] { q, k, v }, inputs, upstream);
        var named = mixer.named_children().ToDictionary(c => c.name, c => (nn.Module<Tensor, Tensor>)c.module);
        var separate = new[] { "q_proj", "k_proj", "v_proj" }.Select(n => Heads.Split(named[n].forward(x), 4)).ToArray();
        var separateGrads = torch.autograd.grad(separate, inputs, upstream);

        Assert.True(q.allclose(separate[0], rtol: 1e-5, atol: 1e-6) && k.allclose(separate[1], rtol: 1e-5, atol: 1e-6) && v.allclose(separate[2], rtol: 1e-5, atol: 1e-6));
        for (int i = 0; i < inputs.Length; i++)
            Assert.True(jointGrads[i].allclose(separateGrads[i], rtol: 1e-5, atol: 1e-5), $"gradient {i} differs");
    }

    [Fact]
    public void DeclinesProjectionsOfDifferentDtypes()
    {
        var mixer = new LinearMixer(new MixerConfig(32, 2), new LinearMixerOptions());
        var named = mixer.named_children().ToDictionary(c => c.name, c => c.module);
        named["v_proj"].to(ScalarType.Float64);
        Assert.Null(mixer.JointProjections());
    }
}

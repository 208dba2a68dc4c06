using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Kernels;

/// <summary>Parameter-free feature maps φ of linear attention (fla's <c>feature_map.py</c>), elementwise on [.., D].</summary>
public static class FeatureMaps
{
    /// <summary>Names accepted by <see cref="Apply"/>.</summary>
    public static readonly IReadOnlyList<string> Names = new[] { "elu", "relu", "identity" };

    /// <summary>Applies the named map: elu → elu(x)+1, relu → relu(x), identity → x (no positivity: use unnormalized).</summary>
    public static Tensor Apply(string name, Tensor x) => name.ToLowerInvariant() switch
    {
        "elu" => nn.functional.elu(x, 1.0) + 1,
        "relu" => nn.functional.relu(x),
        "identity" => x.alias(),
        _ => throw new ArgumentException($"Unknown feature map '{name}'. Known maps: {string.Join(", ", Names)}.", nameof(name)),
    };
}

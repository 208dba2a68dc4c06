using Microsoft.ML.LinearAttention.Attention.VisionKit;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.Van;

/// <summary>Options of VAN's large-kernel attention (defaults of <c>Visual-Attention-Network/VAN-Classification</c>).</summary>
public sealed record VanOptions : MixerOptions
{
    /// <summary>Side of the first depthwise kernel. Reference: 5.</summary>
    public int LocalKernel { get; init; } = 5;
    /// <summary>Side of the dilated depthwise kernel. Reference: 7.</summary>
    public int DilatedKernel { get; init; } = 7;
    /// <summary>Dilation of the second kernel. Reference: 3 (with 5 and 7: the paper's 21 × 21 decomposition, a 23 × 23 field).</summary>
    public int Dilation { get; init; } = 3;
    /// <summary>Add the sub-layer's input to its output, as VAN's SpatialAttention does inside the block. Reference: on.</summary>
    public bool InnerShortcut { get; init; } = true;
}

/// <summary>
/// VAN's spatial attention sub-layer: x → 1×1 (Linear) → GELU → u; a = 1×1(LKA(u)) with LKA = depthwise k₀ × k₀ then
/// depthwise dilated k₁ × k₁ (<see cref="VanKernels"/>); → 1×1(u ⊙ a) (+ x). Attention as a gate computed by large
/// convolutions: O(T·C·(k₀² + k₁²)), no token-token scores and no heads. Reads <see cref="TokenMixer.Grid"/> for 2D
/// kernels; a sequence uses their centre rows.
/// </summary>
public sealed class VanMixer : TokenMixer
{
    private readonly nn.Module<Tensor, Tensor> proj_1;
    private readonly Parameter conv0_weight;
    private readonly Parameter conv0_bias;
    private readonly Parameter conv_spatial_weight;
    private readonly Parameter conv_spatial_bias;
    private readonly Linear conv1;
    private readonly nn.Module<Tensor, Tensor> proj_2;
    private readonly VanOptions _options;

    /// <inheritdoc/>
    public override IReadOnlyList<string> LoraTargets { get; } = new[] { "proj_1", "proj_2" };

    public VanMixer(MixerConfig config, VanOptions options) : base(nameof(VanMixer), config)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (var (k, name) in new[] { (options.LocalKernel, nameof(options.LocalKernel)), (options.DilatedKernel, nameof(options.DilatedKernel)) })
            if (k < 1 || k % 2 == 0) throw new ArgumentOutOfRangeException(nameof(options), k, $"VanOptions.{name} must be a positive odd number (VAN: 5 and 7).");
        if (options.Dilation < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Dilation, "VanOptions.Dilation must be at least 1 (VAN: 3).");
        _options = options;
        int c = config.ModelDim;
        proj_1 = nn.Linear(c, c);
        // PyTorch's Conv2d default for a depthwise kernel: U(±1/√(k·k)) = U(±1/k)
        conv0_weight = new Parameter(torch.empty(c, 1, options.LocalKernel, options.LocalKernel).uniform_(-1.0 / options.LocalKernel, 1.0 / options.LocalKernel));
        conv0_bias = new Parameter(torch.empty(c).uniform_(-1.0 / options.LocalKernel, 1.0 / options.LocalKernel));
        conv_spatial_weight = new Parameter(torch.empty(c, 1, options.DilatedKernel, options.DilatedKernel).uniform_(-1.0 / options.DilatedKernel, 1.0 / options.DilatedKernel));
        conv_spatial_bias = new Parameter(torch.empty(c).uniform_(-1.0 / options.DilatedKernel, 1.0 / options.DilatedKernel));
        conv1 = nn.Linear(c, c);
        proj_2 = nn.Linear(c, c);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? keyPaddingMask)
    {
        MixerInput.Check(this, x, keyPaddingMask);
        using var scope = NewDisposeScope();
        var u = nn.functional.gelu(proj_1.forward(x));
        var a = VanKernels.LargeKernel(u, conv0_weight, conv0_bias, conv_spatial_weight, conv_spatial_bias, _options.Dilation, keyPaddingMask, Grid);
        var y = proj_2.forward(u * conv1.forward(a));
        if (_options.InnerShortcut) y = y + x;
        return Heads.ZeroPadded(y, keyPaddingMask).MoveToOuterDisposeScope();
    }
}

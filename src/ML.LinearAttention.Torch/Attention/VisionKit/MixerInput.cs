using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Attention.VisionKit;

/// <summary>Input checks shared by the mixers of this group, so a wrong shape fails with the expected shape named.</summary>
internal static class MixerInput
{
    internal static void Check(TokenMixer mixer, Tensor x, Tensor? keyPaddingMask)
    {
        if (x.dim() != 3 || x.shape[2] != mixer.Config.ModelDim)
            throw new ArgumentException($"{mixer.GetName()} expects x of shape [B, T, {mixer.Config.ModelDim}] (ModelDim = {mixer.Config.ModelDim}); got {Heads.Shape(x)}.");
        if (keyPaddingMask is null) return;
        if (keyPaddingMask.dim() != 2 || keyPaddingMask.shape[0] != x.shape[0] || keyPaddingMask.shape[1] != x.shape[1])
            throw new ArgumentException($"keyPaddingMask must be [B, T] = [{x.shape[0]}, {x.shape[1]}]; got {Heads.Shape(keyPaddingMask)}.");
        if (keyPaddingMask.dtype != ScalarType.Bool)
            throw new ArgumentException($"keyPaddingMask must be bool (true = real token); got {keyPaddingMask.dtype}.");
    }
}

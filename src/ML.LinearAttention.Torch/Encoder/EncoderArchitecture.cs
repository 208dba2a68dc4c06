using Microsoft.ML.LinearAttention.Attention;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>Layout of the encoder's embeddings and blocks.</summary>
public enum EncoderArchitecture
{
    /// <summary>
    /// The library's own encoder (default): token (+ segment, + learned position) embeddings, pre-norm blocks
    /// (RMSNorm → mixer → residual; RMSNorm → GELU FFN → residual), a final RMSNorm.
    /// </summary>
    PreNorm,

    /// <summary>
    /// BERT's layout, so that a pretrained BERT-family checkpoint loads into it: word + learned absolute position +
    /// token-type embeddings and an embedding LayerNorm; post-norm blocks (LayerNorm(x + mixer(x)), then
    /// LayerNorm(h + FFN(h))) with biases on q/k/v/o and on the FFN; no final norm. The attention sub-layer is still any
    /// registry mixer (softmax for the pretrained model). Needs token input and <see cref="PositionEncoding.Learned"/>.
    /// </summary>
    BertPostNorm,
}

/// <summary>What the softmax→linear conversion needs to see of a block: its mixer and the tensor the mixer reads.</summary>
internal interface IEncoderBlock
{
    /// <summary>The block's token mixer.</summary>
    TokenMixer Mixer { get; }

    /// <summary>The input of the mixer for block input <paramref name="x"/> [B, T, C] (pre-norm: the normed x; post-norm: x).</summary>
    Tensor MixerInput(Tensor x);
}

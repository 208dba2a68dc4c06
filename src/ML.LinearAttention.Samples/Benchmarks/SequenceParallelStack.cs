using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Attention.PlainLinear;
using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Encoder;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// The encoder of `bench training` for sequence parallelism: token embeddings, L pre-norm <see cref="EncoderBlock"/>s
/// (the library's block: RMSNorm, mixer, GELU FFN 4×) whose mixers are <see cref="SequenceParallelLinearMixer"/> (linear
/// attention with the relu map, as `linear_relu`), a final RMSNorm, mean pooling over the whole sequence and a 2-class
/// head. Rotary positions as the `linear_relu` encoder of `bench training`, at the slice's place in the sequence
/// (<see cref="Offset"/>, <see cref="SequenceParallel.RotaryAt"/>). Input: this rank's slice of the token ids [B, T_r]
/// and of the mask. With collectives null (and offset 0) it is the unsplit model.
/// </summary>
internal sealed class SequenceParallelStack : nn.Module<Tensor, Tensor?, Tensor>
{
    private readonly Embedding embedding;
    private readonly ModuleList<EncoderBlock> blocks;
    private readonly RmsNorm norm;
    private readonly Linear head;
    private readonly ICollectives? _collectives;

    public SequenceParallelStack(int vocabulary, int layers, int hidden, int heads, ICollectives? collectives) : base(nameof(SequenceParallelStack))
    {
        _collectives = collectives;
        embedding = nn.Embedding(vocabulary, hidden);
        var options = new LinearMixerOptions { FeatureMap = "relu" };
        blocks = nn.ModuleList(Enumerable.Range(0, layers).Select(i =>
        {
            var mixer = new SequenceParallelLinearMixer(new MixerConfig(hidden, heads, LayerIndex: i, NumLayers: layers), options, collectives);
            mixer.QueryKeyTransform = x => SequenceParallel.RotaryAt(x, Offset);
            return new EncoderBlock(mixer, hidden, 4, 0);
        }).ToArray());
        norm = new RmsNorm(hidden);
        head = nn.Linear(hidden, 2);
        RegisterComponents();
    }

    /// <summary>Position of this rank's first token in the whole sequence (<see cref="SequenceParallel.SliceStart"/>).</summary>
    public long Offset { get; set; }

    public override Tensor forward(Tensor ids, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var x = embedding.forward(ids);
        foreach (var block in blocks) x = block.forward(x, mask);
        x = norm.forward(x);
        Tensor pooled;
        if (_collectives is not null) pooled = SequenceParallel.MeanPool(x, mask, _collectives);
        else
        {
            var w = mask is null ? ones(x.shape[0], x.shape[1], 1, dtype: ScalarType.Float32, device: x.device) : mask.to(ScalarType.Float32).unsqueeze(-1);
            pooled = ((x.to(ScalarType.Float32) * w).sum(1) / w.sum(1).clamp_min(1)).to(x.dtype);
        }
        return head.forward(pooled).MoveToOuterDisposeScope();
    }
}

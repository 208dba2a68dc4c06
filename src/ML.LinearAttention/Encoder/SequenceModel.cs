using Microsoft.ML.LinearAttention.Attention;
using Microsoft.ML.LinearAttention.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Encoder;

/// <summary>
/// The whole network of the text and sequence estimators: token embeddings (+ segment and learned positions) or a
/// linear projection of numeric steps, N pre-norm <see cref="EncoderBlock"/>s whose mixers come from the registry,
/// a final RMSNorm, pooling (mean over true lengths or CLS), and a head (logits, or one scalar for regression) with
/// optional side features fused in. Input standardisation statistics live in buffers, so the saved weights are the
/// whole model.
/// </summary>
public sealed class SequenceModel : TrainableModel
{
    private readonly Embedding? token_embedding;
    private readonly Linear? value_projection;
    private readonly Parameter? cls_vector;
    private readonly Embedding? segment_embedding;
    private readonly Embedding? position_embedding;
    private readonly ModuleList<EncoderBlock> blocks;
    private readonly RmsNorm final_norm;
    private readonly Linear? side_projection;
    private readonly RmsNorm head_norm;
    private readonly Linear head_dense;
    private readonly Linear head_out;
    private readonly Dropout drop;
    private readonly Tensor side_mean;
    private readonly Tensor side_std;
    private readonly Tensor value_mean;
    private readonly Tensor value_std;
    private readonly Tensor target_mean;
    private readonly Tensor target_std;

    public SequenceModel(EncoderConfig config) : base(nameof(SequenceModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        int c = config.ModelDim;
        if (config.VocabularySize > 0)
        {
            token_embedding = nn.Embedding(config.VocabularySize, c, padding_idx: config.PadId);
        }
        else
        {
            value_projection = nn.Linear(config.NumericFeatures, c);
            if (config.Pooling == Pooling.Cls) cls_vector = new Parameter(torch.randn(c) * 0.02);
        }
        if (config.NumSegments > 1) segment_embedding = nn.Embedding(config.NumSegments, c);
        if (config.Position == PositionEncoding.Learned) position_embedding = nn.Embedding(config.MaxPositions, c);

        var list = new List<EncoderBlock>();
        for (int i = 0; i < config.NumLayers; i++)
        {
            var (name, options) = config.MixerFor(i);
            var mixer = MixerRegistry.Create(name, new MixerConfig(c, config.NumHeads, Causal: false, LayerIndex: i, NumLayers: config.NumLayers), options);
            if (config.Position == PositionEncoding.Rope)
            {
                if (!mixer.SupportsQueryKeyTransform)
                    throw new ArgumentException($"Attention mechanism '{name}' (layer {i}) has no query/key projections to rotate, so rotary positions cannot reach it. " +
                                                "Use Position = Learned, or Position = None for mechanisms that already see order (decays, convolutions).");
                double theta = config.RopeTheta;
                mixer.QueryKeyTransform = t => Rotary.Apply(t, theta);
            }
            list.Add(new EncoderBlock(mixer, c, config.FfnMultiplier, config.Dropout));
        }
        blocks = new ModuleList<EncoderBlock>(list.ToArray());
        final_norm = new RmsNorm(c);
        if (config.SideFeatures > 0) side_projection = nn.Linear(config.SideFeatures, c);
        head_norm = new RmsNorm(c);
        head_dense = nn.Linear(c, c);
        head_out = nn.Linear(c, config.Outputs);
        drop = nn.Dropout(config.Dropout);

        side_mean = torch.zeros(Math.Max(1, config.SideFeatures));
        side_std = torch.ones(Math.Max(1, config.SideFeatures));
        value_mean = torch.zeros(Math.Max(1, config.NumericFeatures));
        value_std = torch.ones(Math.Max(1, config.NumericFeatures));
        target_mean = torch.zeros(1);
        target_std = torch.ones(1);
        InitWeights();
        RegisterComponents();
    }

    /// <summary>The configuration this model was built from.</summary>
    public EncoderConfig Config { get; }

    /// <inheritdoc/>
    public override TrainableModel CreateSibling() => new SequenceModel(Config);

    /// <inheritdoc/>
    public override string ConfigurationJson => Config.ToJson();

    /// <inheritdoc/>
    public override string Describe() => $"{Config.ModelDim} hidden, {Config.NumLayers} layers, {Config.Outputs} outputs";

    private void InitWeights()
    {
        using var _ = torch.no_grad();
        if (token_embedding is not null)
        {
            nn.init.normal_(token_embedding.weight!, 0, 0.02);
            token_embedding.weight![Config.PadId].zero_();
        }
        if (segment_embedding is not null) nn.init.normal_(segment_embedding.weight!, 0, 0.02);
        if (position_embedding is not null) nn.init.normal_(position_embedding.weight!, 0, 0.02);
    }

    /// <summary>Sets the standardisation of side features, numeric steps and regression targets (from training data).</summary>
    public void SetNormalization(float[]? sideMean, float[]? sideStd, float[]? valueMean, float[]? valueStd, float targetMean, float targetStd)
    {
        using var _ = torch.no_grad();
        if (sideMean is not null) side_mean.copy_(torch.tensor(sideMean));
        if (sideStd is not null) side_std.copy_(torch.tensor(sideStd));
        if (valueMean is not null) value_mean.copy_(torch.tensor(valueMean));
        if (valueStd is not null) value_std.copy_(torch.tensor(valueStd));
        target_mean.fill_(targetMean);
        target_std.fill_(targetStd);
    }

    /// <summary>Regression targets in the model's standardised units.</summary>
    public override Tensor StandardizeTarget(Tensor y) => (y - target_mean) / target_std;

    /// <summary>Regression output back in the label's units.</summary>
    public override Tensor DestandardizeTarget(Tensor y) => y * target_std + target_mean;

    /// <summary>Pooled representation [B, C] of a batch.</summary>
    public Tensor Encode(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var mask = batch.Mask;
        Tensor x;
        if (token_embedding is not null)
        {
            if (batch.Tokens is null) throw new ArgumentException("This model reads tokens but the batch has none.");
            x = token_embedding.forward(batch.Tokens);
            if (segment_embedding is not null && batch.Segments is not null) x = x + segment_embedding.forward(batch.Segments);
        }
        else
        {
            if (batch.Values is null) throw new ArgumentException("This model reads numeric sequences but the batch has none.");
            x = value_projection!.forward(((batch.Values - value_mean) / value_std).to(head_out.weight!.dtype));
            if (cls_vector is not null)
            {
                x = cat(new[] { cls_vector.view(1, 1, -1).expand(x.shape[0], 1, -1), x }, 1);
                mask = cat(new[] { ones(mask.shape[0], 1, dtype: ScalarType.Bool, device: mask.device), mask }, 1);
            }
        }
        long t = x.shape[1];
        if (position_embedding is not null)
        {
            if (t > Config.MaxPositions)
                throw new ArgumentException($"A sequence of {t} steps exceeds the learned position table ({Config.MaxPositions}); use Position = Rope or raise MaxPositions.");
            x = x + position_embedding.forward(arange(t, device: x.device)).unsqueeze(0);
        }
        x = drop.forward(Heads.ZeroPadded(x, mask));
        foreach (var block in blocks) x = block.forward(x, mask);
        x = final_norm.forward(x);
        Tensor pooled;
        if (Config.Pooling == Pooling.Cls) pooled = x.select(1, 0);
        else
        {
            var m = mask.unsqueeze(-1).to(x.dtype);
            pooled = (x * m).sum(1) / m.sum(1).clamp_min(1);
        }
        return pooled.MoveToOuterDisposeScope();
    }

    /// <summary>Head outputs [B, Outputs]: class logits, or the standardised regression value.</summary>
    public override Tensor Forward(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var h = Encode(batch);
        if (side_projection is not null)
        {
            if (batch.Side is null) throw new ArgumentException("This model fuses side features but the batch has none.");
            h = h + side_projection.forward(((batch.Side - side_mean) / side_std).to(h.dtype));
        }
        h = nn.functional.gelu(head_dense.forward(head_norm.forward(h)));
        return head_out.forward(drop.forward(h)).MoveToOuterDisposeScope();
    }
}

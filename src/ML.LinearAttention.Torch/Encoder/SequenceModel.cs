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
/// <para>With <see cref="EncoderArchitecture.BertPostNorm"/> the embeddings and blocks follow BERT instead (word + position +
/// token-type embeddings, embedding LayerNorm, <see cref="PostNormBlock"/>s, no final norm), so pretrained BERT-family
/// weights load into it (Pretrained/BertEncoderWeights).</para>
/// </summary>
public sealed class SequenceModel : TrainableModel
{
    private readonly Embedding? token_embedding;
    private readonly Linear? value_projection;
    private readonly Parameter? cls_vector;
    private readonly Embedding? segment_embedding;
    private readonly Embedding? position_embedding;
    private readonly LayerNorm? embedding_norm;
    private readonly ModuleList<nn.Module<Tensor, Tensor?, Tensor>> blocks;
    private readonly RmsNorm? final_norm;
    private readonly Linear? side_projection;
    private readonly RmsNorm head_norm;
    private readonly Linear head_dense;
    private readonly Linear head_out;
    private readonly FastDropout drop;
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
        bool bert = config.Architecture == EncoderArchitecture.BertPostNorm;
        if (bert) segment_embedding = nn.Embedding(config.TokenTypes, c);
        else if (config.NumSegments > 1) segment_embedding = nn.Embedding(config.NumSegments, c);
        if (config.Position == PositionEncoding.Learned) position_embedding = nn.Embedding(config.MaxPositions, c);
        if (bert) embedding_norm = nn.LayerNorm(c, config.LayerNormEpsilon);

        var list = new List<nn.Module<Tensor, Tensor?, Tensor>>();
        for (int i = 0; i < config.NumLayers; i++)
        {
            var (name, options) = config.MixerFor(i);
            var mixerConfig = new MixerConfig(c, config.NumHeads, Causal: false, LayerIndex: i, NumLayers: config.NumLayers) { ProjectionBias = bert };
            var mixer = MixerRegistry.Create(name, mixerConfig, options);
            if (config.Position == PositionEncoding.Rope)
            {
                if (!mixer.SupportsQueryKeyTransform)
                    throw new ArgumentException($"Attention mechanism '{name}' (layer {i}) has no query/key projections to rotate, so rotary positions cannot reach it. " +
                                                "Use Position = Learned, or Position = None for mechanisms that already see order (decays, convolutions).");
                double theta = config.RopeTheta;
                mixer.QueryKeyTransform = t => Rotary.Apply(t, theta);
            }
            if (bert) list.Add(new PostNormBlock(mixer, c, config.FfnHidden, config.Dropout, config.LayerNormEpsilon, config.Activation));
            else list.Add(new EncoderBlock(mixer, c, config.FfnHiddenSize > 0 ? (double)config.FfnHiddenSize / c : config.FfnMultiplier, config.Dropout));
        }
        blocks = new ModuleList<nn.Module<Tensor, Tensor?, Tensor>>(list.ToArray());
        if (!bert) final_norm = new RmsNorm(c);
        if (config.SideFeatures > 0) side_projection = nn.Linear(config.SideFeatures, c);
        head_norm = new RmsNorm(c);
        head_dense = nn.Linear(c, c);
        head_out = nn.Linear(c, config.Outputs);
        drop = new FastDropout(config.Dropout);

        side_mean = torch.zeros(Math.Max(1, config.SideFeatures));
        side_std = torch.ones(Math.Max(1, config.SideFeatures));
        value_mean = torch.zeros(Math.Max(1, config.NumericFeatures));
        value_std = torch.ones(Math.Max(1, config.NumericFeatures));
        target_mean = torch.zeros(1);
        target_std = torch.ones(1);
        InitWeights();
        RegisterComponents();
    }

    /// <summary>The configuration this model was built from (code wrapping the model records itself in its
    /// <see cref="EncoderConfig.Extensions"/>).</summary>
    public EncoderConfig Config { get; internal set; }

    /// <summary>
    /// Activation checkpointing of every block while training (a run-time switch, not saved with the model): a block
    /// keeps only its input in the forward pass and recomputes its activations in the backward pass. About one extra
    /// forward pass of compute for activation memory that no longer grows with the layers' intermediate tensors; for
    /// the longest inputs. See <see cref="BlockCheckpoint"/>.
    /// </summary>
    public override bool CheckpointActivations { get; set; }

    private Tensor RunBlock(nn.Module<Tensor, Tensor?, Tensor> block, Tensor x, Tensor? mask)
        => CheckpointActivations && training && is_grad_enabled() && x.requires_grad
            ? BlockCheckpoint.Run(block, x, mask, e => Interlocked.CompareExchange(ref _checkpointFailure, e, null))
            : block.forward(x, mask);

    private Exception? _checkpointFailure;

    /// <summary>Rethrows (once) an exception of a checkpointed block's backward recomputation; call after backward().</summary>
    public override void ThrowIfCheckpointFailed()
    {
        var e = Interlocked.Exchange(ref _checkpointFailure, null);
        if (e is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e).Throw();
    }

    /// <inheritdoc/>
    public override TrainableModel CreateSibling()
    {
        var sibling = new SequenceModel(Config);
        foreach (var change in _structureChanges) change(sibling);
        return sibling;
    }

    private readonly List<Action<SequenceModel>> _structureChanges = new();

    /// <summary>
    /// Applies a change of structure made from outside the encoder (the fine-tuning catalog's adapters, heads and
    /// recalibration modules) and remembers it, so that <see cref="CreateSibling"/> builds a model with the same
    /// parameters. The encoder never looks inside the change.
    /// </summary>
    public void ChangeStructure(Action<SequenceModel> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        change(this);
        _structureChanges.Add(change);
    }

    /// <inheritdoc/>
    public override string ConfigurationJson => Config.ToJson();

    /// <inheritdoc/>
    public override bool SupportsResumableCheckpoints => true;

    /// <summary>Softmax-attention models (pretrained backbones): bf16 CPU training kept their accuracy on four data sets
    /// (docs/benchmarks/cpu-precision). Linear and converted models, whose feature maps were not measured in bf16 on the
    /// CPU, stay fp32 under Auto.</summary>
    public override bool AutoBFloat16OnCpu => Config.Mixer == "softmax" && Config.Layers is null;

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
        // Explicit scalars kept alive across the native call: an implicit float → Scalar can be finalized by the GC while
        // fill_ still reads it (a rare "toFloat" check failure in Fit under load).
        using (var mean = targetMean.ToScalar()) target_mean.fill_(mean);
        using (var std = targetStd.ToScalar()) target_std.fill_(std);
    }

    /// <summary>Regression targets in the model's standardised units.</summary>
    public override Tensor StandardizeTarget(Tensor y) => (y - target_mean) / target_std;

    /// <summary>Regression output back in the label's units.</summary>
    public override Tensor DestandardizeTarget(Tensor y) => y * target_std + target_mean;

    /// <summary>Pooled representation [B, C] of a batch.</summary>
    public Tensor Encode(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var (x, mask) = EncodeTokens(batch);
        return Pool(x, mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Final token states [B, T, C] (after the final norm) and their mask [B, T]; for CLS pooling of numeric input both
    /// include the prepended CLS step.
    /// </summary>
    public (Tensor States, Tensor Mask) EncodeTokens(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var (x, mask) = Embed(batch);
        var blockMask = batch.HasPadding ? mask : null; // no padding: mask-free (flash) kernels, same result
        foreach (var block in blocks) x = RunBlock(block, x, blockMask);
        if (final_norm is not null) x = final_norm.forward(x);
        return (x.MoveToOuterDisposeScope(), ReferenceEquals(mask, batch.Mask) ? mask : mask.MoveToOuterDisposeScope());
    }

    /// <summary>The blocks (for the softmax→linear conversion, which reads their mixers and mixer inputs).</summary>
    internal IReadOnlyList<IEncoderBlock> Blocks => blocks.Cast<IEncoderBlock>().ToList();

    /// <summary>The input of the first block [B, T, C] and its mask, in the caller's dispose scope (the mask is
    /// <c>batch.Mask</c> itself unless a CLS step was prepended).</summary>
    internal (Tensor X, Tensor Mask) Embed(ModelBatch batch)
    {
        var mask = batch.Mask;
        Tensor x;
        if (token_embedding is not null)
        {
            if (batch.Tokens is null) throw new ArgumentException("This model reads tokens but the batch has none.");
            x = token_embedding.forward(batch.Tokens);
            if (embedding_norm is not null)
            {
                // BERT adds a token type to every token (type 0 when there are no segments); extra segments share the last type.
                var types = batch.Segments?.clamp_max(Config.TokenTypes - 1) ?? zeros_like(batch.Tokens);
                x = x + segment_embedding!.forward(types);
            }
            else if (segment_embedding is not null && batch.Segments is not null) x = x + segment_embedding.forward(batch.Segments);
        }
        else
        {
            if (batch.Values is null) throw new ArgumentException("This model reads numeric sequences but the batch has none.");
            x = value_projection!.forward(((batch.Values - value_mean) / value_std).to(value_projection.weight!.dtype));
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
        if (embedding_norm is not null) x = embedding_norm.forward(x);
        return (drop.forward(Heads.ZeroPadded(x, mask)), mask);
    }

    /// <summary>The pooled vector [B, C] of final states [B, T, C] (CLS token, or the mean over real tokens).</summary>
    internal Tensor Pool(Tensor x, Tensor mask)
    {
        if (Config.Pooling == Pooling.Cls) return x.select(1, 0);
        var m = mask.unsqueeze(-1).to(x.dtype);
        return (x * m).sum(1) / m.sum(1).clamp_min(1);
    }

    /// <summary>Head outputs [B, Outputs]: class logits, or the standardised regression value.</summary>
    public override Tensor Forward(ModelBatch batch)
    {
        using var scope = NewDisposeScope();
        var (states, mask) = EncodeTokens(batch);
        var h = Pool(states, mask);
        if (side_projection is not null)
        {
            if (batch.Side is null) throw new ArgumentException("This model fuses side features but the batch has none.");
            h = h + side_projection.forward(((batch.Side - side_mean) / side_std).to(h.dtype));
        }
        return Head(states, mask, h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The head alone: final states [B, T, C], mask [B, T] and the pooled vector [B, C] (side features fused in) →
    /// [B, Outputs]. Heads trained on cached features of a frozen encoder call it directly.
    /// </summary>
    internal Tensor Head(Tensor states, Tensor mask, Tensor pooled)
    {
        if (probe_head is not null) return probe_head.forward(states, mask, pooled);
        var h = nn.functional.gelu(head_dense.forward(head_norm.forward(pooled)));
        return head_out.forward(drop.forward(h));
    }

    // ---- fine-tuning seam (FineTuning/): a replacement head ----
    private SequenceHead? probe_head;

    /// <summary>The head that replaced the built-in one (linear probe, Moment Probing), or null.</summary>
    public SequenceHead? ProbeHead => probe_head;

    /// <summary>
    /// Replaces the built-in head (RMSNorm → dense → GELU → out) by <paramref name="head"/>; the built-in head's weights
    /// leave the model (its state and parameter count). Side features still reach the new head through the pooled vector.
    /// </summary>
    public void ReplaceHead(SequenceHead head)
    {
        ArgumentNullException.ThrowIfNull(head);
        if (probe_head is null)
        {
            foreach (var name in new[] { "head_norm", "head_dense", "head_out" }) register_module(name, null!);
            head_norm.Dispose(); head_dense.Dispose(); head_out.Dispose();
        }
        else
        {
            register_module("probe_head", null!);
            probe_head.Dispose();
        }
        probe_head = head;
        register_module("probe_head", head);
    }
}

using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Conversion;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// The estimators' <c>PretrainedBackbone</c>: the checkpoint fixes the architecture, every size and the tokenizer; an
/// option that contradicts it is an error naming the option and the checkpoint's value (options left at their
/// defaults are simply overridden).
/// </summary>
internal sealed class BackboneSetup
{
    private BackboneSetup(BertCheckpoint checkpoint, TextTokenizer tokenizer)
    {
        Checkpoint = checkpoint;
        Tokenizer = tokenizer;
    }

    public BertCheckpoint Checkpoint { get; }
    public TextTokenizer Tokenizer { get; }

    /// <summary>
    /// Loads the backbone and checks <paramref name="o"/> against it. The default MaxSequenceLength (4,096) is lowered
    /// to the checkpoint's position table (the estimator owns its copy of the options).
    /// </summary>
    public static BackboneSetup Prepare(LinearAttentionOptions o, InputColumns columns, ITrainingLog log)
    {
        if (columns.SequenceColumn is not null || columns.TextColumns.Count == 0)
            throw new ArgumentException("PretrainedBackbone reads text: numeric-sequence input (SequenceColumnName) cannot use a pretrained BERT backbone.");
        var checkpoint = PretrainedBackbones.Load(o.PretrainedBackbone!);
        var b = checkpoint.Config;
        var d = (LinearAttentionOptions)Activator.CreateInstance(o.GetType())!;
        void Fixed<T>(string option, T value, T defaultValue, T checkpointValue)
        {
            if (!EqualityComparer<T>.Default.Equals(value, defaultValue) && !EqualityComparer<T>.Default.Equals(value, checkpointValue))
                throw new ArgumentException($"{option} = {value} contradicts the pretrained backbone '{o.PretrainedBackbone}', which has {checkpointValue}. " +
                                            $"Leave {option} at its default (the backbone fixes it) or set it to {checkpointValue}.");
        }
        Fixed(nameof(o.ModelDimension), o.ModelDimension, d.ModelDimension, b.HiddenSize);
        Fixed(nameof(o.NumberOfLayers), o.NumberOfLayers, d.NumberOfLayers, b.NumLayers);
        Fixed(nameof(o.NumberOfHeads), o.NumberOfHeads, d.NumberOfHeads, b.NumHeads);
        Fixed(nameof(o.FeedForwardMultiplier), o.FeedForwardMultiplier, d.FeedForwardMultiplier, (double)b.IntermediateSize / b.HiddenSize);
        Fixed(nameof(o.Position), o.Position, d.Position, PositionEncoding.Learned);
        if (!string.Equals(o.Attention, d.Attention, StringComparison.OrdinalIgnoreCase) && !string.Equals(o.Attention, "softmax", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"Attention = '{o.Attention}' contradicts the pretrained backbone '{o.PretrainedBackbone}', whose layers are softmax. " +
                                        $"To replace them by '{o.Attention}', set Conversion = new ConversionOptions {{ Attention = \"{o.Attention}\" }}.");
        bool hybrid = !string.IsNullOrWhiteSpace(o.HybridPlan) && !string.Equals(o.HybridPlan.Trim(), "none", StringComparison.OrdinalIgnoreCase);
        if (o.AttentionOptions is not null || o.LayerPlan is not null || hybrid)
            throw new ArgumentException($"AttentionOptions, LayerPlan and HybridPlan do not apply to the pretrained backbone '{o.PretrainedBackbone}' (its layers are softmax); " +
                                        "choose the mechanism and layers to convert with Conversion (ConversionOptions.Attention, AttentionOptions, Layers or HybridPlan).");
        if (o.Tokenizer.Kind != TokenizerKind.WordPiece || o.Tokenizer.VocabularyFile is not null || o.Tokenizer.MergesFile is not null)
            throw new ArgumentException($"The pretrained backbone '{o.PretrainedBackbone}' comes with its own WordPiece vocabulary; leave Tokenizer at its default " +
                                        "(only Tokenizer.LowerCase applies: false for cased models).");
        if (o.MaxSequenceLength > b.MaxPositions)
        {
            if (o.MaxSequenceLength != d.MaxSequenceLength)
                throw new ArgumentException($"MaxSequenceLength = {o.MaxSequenceLength} exceeds the {b.MaxPositions} positions of the pretrained backbone '{o.PretrainedBackbone}'; use at most {b.MaxPositions}.");
            o.MaxSequenceLength = b.MaxPositions;
        }
        var tokenizer = PretrainedBackbones.Tokenizer(checkpoint, o.Tokenizer.LowerCase);
        log.Info($"Pretrained backbone '{o.PretrainedBackbone}' ({checkpoint.Source}): {b.NumLayers} layers, hidden {b.HiddenSize}, {b.NumHeads} heads, " +
                 $"FFN {b.IntermediateSize}, {b.MaxPositions} positions, tokenizer {DescribeTokenizer(tokenizer, o.PretrainedBackbone!)}, MaxSequenceLength {o.MaxSequenceLength}.");
        return new BackboneSetup(checkpoint, tokenizer);
    }

    /// <summary>
    /// The backbone's tokenizer for the log: its own vocabulary (the tokenizer's text would call a vocabulary identical to
    /// bert-base-uncased's "embedded", as if the backbone's had been replaced).
    /// </summary>
    internal static string DescribeTokenizer(TextTokenizer tokenizer, string backbone)
        => $"{tokenizer.Kind} ({backbone}'s own vocabulary, {tokenizer.VocabularySize:N0} ids)";

    /// <summary>The task's configuration with the backbone's architecture and sizes (softmax in every layer).</summary>
    public EncoderConfig Configure(EncoderConfig task) => BertEncoderWeights.ConfigFor(Checkpoint.Config, Tokenizer.PadId, task);

    /// <summary>Copies the backbone's weights into a model built from <see cref="Configure"/>.</summary>
    public void LoadWeights(SequenceModel model, ITrainingLog log)
    {
        int n = BertEncoderWeights.LoadInto(model, Checkpoint);
        log.Info($"Loaded {n} pretrained tensors into the encoder; the task head ({model.Config.Outputs} output(s)) starts fresh.");
    }
}

using System.Collections;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Pretrained;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Estimators;

/// <summary>
/// What Fit does so that the defaults can be trusted on a few thousand rows: hold out a seeded validation split when
/// the user gave no validation set (early stopping, best weights and temperature scaling need one), keep the fitted
/// temperature with the model's configuration, and point at a pretrained backbone the application already references.
/// </summary>
internal static class SmallDataDefaults
{
    /// <summary>Fewest validation rows worth holding out: fewer make early stopping and the temperature noise.</summary>
    internal const int MinValidationRows = 50;

    /// <summary>Key of the temperature in <see cref="EncoderConfig.Extensions"/> (absent in models saved before it existed: T = 1).</summary>
    internal const string TemperatureExtension = "Temperature";

    /// <summary>Automatic <see cref="LinearAttentionOptions.MaxEpochs"/> of a model trained from scratch with validation
    /// rows: a fresh network needs many passes over a few thousand rows, and early stopping (with the best epoch's
    /// weights restored) ends the run where the validation loss stops improving, usually well before this bound.</summary>
    public const int ScratchEpochs = 20;

    /// <summary>Automatic <see cref="LinearAttentionOptions.MaxEpochs"/> otherwise: a pretrained backbone needs only a few
    /// passes over a large set, and without validation rows nothing would stop a long run before it overfits.</summary>
    public const int PretrainedEpochs = 3;

    /// <summary>Optimizer steps that the automatic <see cref="LinearAttentionOptions.MaxEpochs"/> gives at least to a
    /// parameter-efficient method (<see cref="ParameterEfficientShare"/>) on a pretrained or converted model, when
    /// validation rows and early stopping can end the run: three epochs of a thousand rows are under a hundred steps,
    /// too few for a new head and adapters that start at zero (LoRA, PSRP) to settle. A full fine-tune keeps
    /// <see cref="PretrainedEpochs"/>: every weight moves, and a small set is fitted within a few epochs.</summary>
    public const int PretrainedMinimumSteps = 300;

    /// <summary>Largest share of the parameters that train for a method to count as parameter-efficient here.</summary>
    public const double ParameterEfficientShare = 0.1;

    /// <summary>Most epochs that <see cref="PretrainedMinimumSteps"/> can ask for (a few hundred rows).</summary>
    public const int PretrainedMaxEpochs = 20;

    /// <summary>Checks the options this class reads; the message names the option and the fix.</summary>
    internal static void Check(LinearAttentionOptions o)
    {
        if (o.MaxEpochs is < 1)
            throw new ArgumentOutOfRangeException(nameof(o.MaxEpochs), o.MaxEpochs,
                $"MaxEpochs must be at least 1, or null to let Fit choose (with validation rows and early stopping: {ScratchEpochs} for a model trained from scratch, enough for {PretrainedMinimumSteps} steps for a parameter-efficient method on a pretrained one; {PretrainedEpochs} otherwise).");
        if (double.IsNaN(o.ValidationFraction) || o.ValidationFraction is < 0 or > 0.5)
            throw new ArgumentOutOfRangeException(nameof(o.ValidationFraction), o.ValidationFraction,
                "ValidationFraction must lie in [0, 0.5]: the share of training rows held out for validation when no ValidationSet is given (0 = no automatic split; 0.1 is the default).");
        if (o.EarlyStoppingPatience < 0)
            throw new ArgumentOutOfRangeException(nameof(o.EarlyStoppingPatience), o.EarlyStoppingPatience,
                "EarlyStoppingPatience must be 0 (never stop early) or a positive number of epochs without validation improvement, e.g. 2.");
        if (double.IsNaN(o.LabelSmoothing) || o.LabelSmoothing is < 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(o.LabelSmoothing), o.LabelSmoothing,
                "LabelSmoothing must lie in [0, 1): 0 turns it off; values around 0.1 soften an overconfident classifier.");
        if (double.IsNaN(o.WeightDecay) || o.WeightDecay < 0)
            throw new ArgumentOutOfRangeException(nameof(o.WeightDecay), o.WeightDecay, "WeightDecay must be 0 (off) or positive, e.g. 0.01.");
        if (double.IsNaN(o.Dropout) || o.Dropout is < 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(o.Dropout), o.Dropout, "Dropout must lie in [0, 1), e.g. 0.1.");
    }

    /// <summary>
    /// Which of <paramref name="rows"/> labelled rows to hold out (a seeded random sample, identical in every Fit with
    /// the same seed), or null when there is a validation set, the fraction is 0, or there are too few rows for one.
    /// </summary>
    internal static BitArray? ChooseValidationRows(LinearAttentionOptions o, long rows, int seed, ITrainingLog log)
    {
        if (o.ValidationSet is not null || o.ValidationFraction <= 0) return null;
        long held = Math.Max(MinValidationRows, (long)Math.Round(rows * o.ValidationFraction));
        if (held * 4 > rows || rows > int.MaxValue)
        {
            log.Info($"No automatic validation split: {rows:N0} training rows are too few to hold out {MinValidationRows} or more and keep three quarters " +
                     "(no early stopping, no temperature scaling). Give a ValidationSet to get both.");
            return null;
        }
        var chosen = new BitArray((int)rows);
        var rng = new Random(seed);
        // Partial Fisher–Yates over the row indices: exactly `held` distinct rows, memory of one index per held row.
        var swapped = new Dictionary<long, long>();
        long At(long i) => swapped.TryGetValue(i, out var v) ? v : i;
        for (long i = 0; i < held; i++)
        {
            long j = i + (long)(rng.NextDouble() * (rows - i));
            long pick = At(j);
            swapped[j] = At(i);
            chosen[(int)pick] = true;
        }
        log.Info($"Validation split: {held:N0} of {rows:N0} training rows held out (ValidationFraction = {o.ValidationFraction:G3}, seed {seed}) for early stopping, " +
                 "the best epoch's weights and temperature scaling; pass a ValidationSet, or ValidationFraction = 0 to train on every row.");
        return chosen;
    }

    /// <summary>
    /// <see cref="LinearAttentionOptions.MaxEpochs"/> as this Fit uses it: the user's value, or the automatic one — many
    /// epochs only where early stopping can end them (a from-scratch model, validation rows, patience above 0).
    /// </summary>
    /// <param name="trainRows">Rows the optimizer steps over per epoch (validation rows left out).</param>
    /// <param name="trainableShare">Share of the model's parameters that train (the fine-tuning method's).</param>
    internal static int Epochs(LinearAttentionOptions o, bool fromScratch, bool hasValidationRows, long trainRows, double trainableShare, ITrainingLog log)
    {
        if (o.MaxEpochs is { } chosen) return chosen;
        if (!hasValidationRows || o.EarlyStoppingPatience <= 0) return PretrainedEpochs;
        if (fromScratch)
        {
            log.Info($"MaxEpochs: up to {ScratchEpochs} (automatic for a model trained from scratch); early stopping after {o.EarlyStoppingPatience} epoch(s) " +
                     "without validation improvement ends it and restores the best epoch. Set MaxEpochs to fix the number.");
            return ScratchEpochs;
        }
        if (trainableShare > ParameterEfficientShare) return PretrainedEpochs;
        long stepsPerEpoch = Math.Max(1, (trainRows + (long)o.BatchSize * o.GradientAccumulationSteps - 1) / ((long)o.BatchSize * o.GradientAccumulationSteps));
        int epochs = (int)Math.Clamp((PretrainedMinimumSteps + stepsPerEpoch - 1) / stepsPerEpoch, PretrainedEpochs, PretrainedMaxEpochs);
        if (epochs > PretrainedEpochs)
            log.Info($"MaxEpochs: up to {epochs} (automatic: {trainRows:N0} training rows give {stepsPerEpoch:N0} step(s) per epoch, and a parameter-efficient method " +
                     $"({trainableShare:P1} of the parameters train) gets at least {PretrainedMinimumSteps} steps, at most {PretrainedMaxEpochs} epochs); " +
                     $"early stopping after {o.EarlyStoppingPatience} epoch(s) without validation " +
                     "improvement ends it and restores the best epoch. Set MaxEpochs to fix the number.");
        return epochs;
    }

    /// <summary>Rows of a stream whose index is (<paramref name="keep"/> = true) or is not in <paramref name="chosen"/>.</summary>
    internal static IEnumerable<Example> Select(IEnumerable<Example> rows, BitArray chosen, bool keep)
    {
        int i = 0;
        foreach (var row in rows)
        {
            bool isChosen = i < chosen.Length && chosen[i];
            i++;
            if (isChosen == keep) yield return row;
        }
    }

    /// <summary>The temperature stored with a model's configuration (1 when none was fit or the model predates it).</summary>
    internal static double TemperatureOf(EncoderConfig config)
        => config.Extensions?.TryGetValue(TemperatureExtension, out var e) == true && e.ValueKind == JsonValueKind.Number && e.GetDouble() > 0
            ? e.GetDouble() : 1.0;

    /// <summary>Records <paramref name="temperature"/> in the model's configuration, which is saved with the model.</summary>
    internal static void StoreTemperature(SequenceModel model, double temperature)
    {
        var extensions = model.Config.Extensions is null ? new Dictionary<string, JsonElement>() : new Dictionary<string, JsonElement>(model.Config.Extensions);
        extensions[TemperatureExtension] = JsonSerializer.SerializeToElement(temperature);
        model.Config = model.Config with { Extensions = extensions };
    }

    /// <summary>A pretrained text backbone whose package the application references, or null.</summary>
    internal static string? ReferencedPretrainedBackbone()
    {
        foreach (var (name, assembly) in new[] { (PretrainedBackbones.AllMiniLmL6V2, BertCheckpoint.MiniLmAssembly), (PretrainedBackbones.ArcticEmbedXs, BertCheckpoint.ArcticXsAssembly) })
        {
            try
            {
                System.Reflection.Assembly.Load(assembly);
                return name;
            }
            catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException) { }
        }
        return null;
    }
}

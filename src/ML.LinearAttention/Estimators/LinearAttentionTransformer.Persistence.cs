using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using Microsoft.ML.LinearAttention.Data;

namespace Microsoft.ML.LinearAttention.Estimators;

public abstract partial class LinearAttentionTransformer : ICanSaveModel
{
    internal const string LoaderSignature = "LinearAttnTransformer"; // ML.NET allows at most 24 characters
    internal const string UserName = "ML.LinearAttention transformer";
    private const byte ClassificationTask = 1;
    private const byte RegressionTask = 2;
    private const byte ImageClassificationTask = 3;

    /// <summary>The model format this build writes (and the newest it reads).</summary>
    internal const uint FormatVersion = 0x00010001; // initial format

    private static object Version => MLNetBridge.VersionInfo(
        modelSignature: "LINATTNT",
        verWrittenCur: FormatVersion,
        verReadableCur: FormatVersion,
        verWeCanReadBack: 0x00010001,
        loaderAssemblyName: typeof(LinearAttentionTransformer).Assembly.FullName!,
        loaderSignature: LoaderSignature);

    void ICanSaveModel.Save(ModelSaveContext ctx)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        MLNetBridge.Save(ctx, Version, WriteMain, ("Weights", w => Model.save(w)));
    }

    // *** Binary format (main stream) ***
    // byte     task (1 = classification, 2 = regression, 3 = image classification)
    // string   model configuration, JSON (EncoderConfig; VisionConfig for task 3)
    // int      number of text columns, then each name
    // string?  numeric-sequence column (bool + string), int features per step
    // string?  side-feature column (bool + string)
    // string   label column, int label kind
    // string   score column
    // int      max sequence length, int inference batch size
    // bool     has tokenizer, then the tokenizer block (TextTokenizer.Write)
    // int      pad id, int numeric features, int side length, int n + n floats of side fill
    // ...      task block (WriteTask)
    // entry "Weights": the network's state (TorchSharp Module.save)
    private void WriteMain(BinaryWriter w)
    {
        w.Write(TaskCode);
        w.Write(Model.ConfigurationJson);
        w.Write(Columns.TextColumns.Count);
        foreach (var t in Columns.TextColumns) w.Write(t);
        WriteOptional(w, Columns.SequenceColumn);
        w.Write(Columns.SequenceFeatures);
        WriteOptional(w, Columns.SideFeaturesColumn);
        w.Write(Columns.LabelColumn);
        w.Write((int)Columns.LabelKind);
        w.Write(ScoreColumnName);
        w.Write(MaxSequenceLength);
        w.Write(InferenceBatchSize);
        w.Write(Tokenizer is not null);
        Tokenizer?.Write(w);
        w.Write(Spec.PadId);
        w.Write(Spec.NumericFeatures);
        w.Write(Spec.SideLength);
        var fill = Spec.SideFill ?? Array.Empty<float>();
        w.Write(fill.Length);
        foreach (var f in fill) w.Write(f);
        WriteTask(w);
    }

    /// <summary>Task-specific part of the main stream.</summary>
    private protected abstract void WriteTask(BinaryWriter w);

    /// <summary>
    /// Called by ML.NET's ComponentCatalog when it loads a model saved by this library (registered by
    /// <see cref="LinearAttentionModel.Register(MLContext)"/>); <paramref name="ctx"/> is ML.NET's ModelLoadContext.
    /// </summary>
    public static LinearAttentionTransformer Create(IHostEnvironment env, object ctx)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        ModelFiles.CheckFormatVersion(MLNetBridge.ModelVersions(ctx), FormatVersion);
        var r = MLNetBridge.BeginLoad(ctx, Version);
        byte task = r.ReadByte();
        string configJson = r.ReadString();
        var texts = Enumerable.Range(0, r.ReadInt32()).Select(_ => r.ReadString()).ToArray();
        var sequence = ReadOptional(r);
        int features = r.ReadInt32();
        var side = ReadOptional(r);
        var columns = new InputColumns
        {
            TextColumns = texts, SequenceColumn = sequence, SequenceFeatures = features, SideFeaturesColumn = side,
            LabelColumn = r.ReadString(), LabelKind = (LabelKind)r.ReadInt32(),
        };
        string score = r.ReadString();
        int maxLength = r.ReadInt32();
        int inferenceBatch = r.ReadInt32();
        var tokenizer = r.ReadBoolean() ? TextTokenizer.Read(r) : null;
        int pad = r.ReadInt32(), numeric = r.ReadInt32(), sideLength = r.ReadInt32();
        var fill = Enumerable.Range(0, r.ReadInt32()).Select(_ => r.ReadSingle()).ToArray();
        var spec = new CollateSpec(columns.LabelKind, pad, numeric, sideLength, fill.Length > 0 ? fill : null);

        var device = ResolveDevice(env, cpuThreads: null);
        TrainableModel model = task == ImageClassificationTask
            ? new Vision.VisionModel(Vision.VisionConfig.FromJson(configJson))
            : new SequenceModel(EncoderConfig.FromJson(configJson));
        try
        {
            if (!MLNetBridge.TryLoadBinaryStream(ctx, "Weights", w => model.load(w, strict: true)))
                throw new InvalidDataException("The saved ML.LinearAttention model has no 'Weights' entry; the file is damaged.");
            model.to(device);
            return task switch
            {
                ClassificationTask => TextClassificationTransformer.Read(r, env, (SequenceModel)model, tokenizer, columns, maxLength, spec, inferenceBatch, device, score),
                RegressionTask => new SequenceRegressionTransformer(env, (SequenceModel)model, tokenizer, columns, maxLength, spec, inferenceBatch, device, score),
                ImageClassificationTask => Vision.ImageClassificationTransformer.Read(r, env, (Vision.VisionModel)model, columns, spec, inferenceBatch, device, score),
                _ => throw new InvalidDataException($"Unknown task code {task} in the saved ML.LinearAttention model."),
            };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private static void WriteOptional(BinaryWriter w, string? s)
    {
        w.Write(s is not null);
        if (s is not null) w.Write(s);
    }

    private static string? ReadOptional(BinaryReader r) => r.ReadBoolean() ? r.ReadString() : null;
}

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
    internal const byte ClassificationTask = 1;
    internal const byte RegressionTask = 2;
    internal const byte ImageClassificationTask = 3;

    /// <summary>The model format this build writes (and the newest it reads).</summary>
    internal const uint FormatVersion = 0x00010001; // initial format

    internal static object Version => MLNetBridge.VersionInfo(
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

    private static void WriteOptional(BinaryWriter w, string? s)
    {
        w.Write(s is not null);
        if (s is not null) w.Write(s);
    }

    internal static string? ReadOptional(BinaryReader r) => r.ReadBoolean() ? r.ReadString() : null;
}

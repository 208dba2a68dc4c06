using Microsoft.ML.LinearAttention.Data;
using Microsoft.ML.LinearAttention.Encoder;
using Microsoft.ML.LinearAttention.Estimators;
using Microsoft.ML.LinearAttention.FineTuning;
using Microsoft.ML.LinearAttention.Runtime;
using Microsoft.ML.LinearAttention.Tokenization;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Vision;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.LinearAttention.Persistence;

/// <summary>
/// The loader of every transformer this library saves: reads the common header that
/// <see cref="LinearAttentionTransformer"/> writes, rebuilds the network (with the structure of its fine-tuning
/// method), loads its weights and hands the rest of the stream to the task's transformer. It sits above the text and
/// image estimators so that neither knows the other.
/// </summary>
internal static class ModelLoader
{
    /// <summary>
    /// Called by ML.NET's ComponentCatalog when it loads a model saved by this library (registered by
    /// <see cref="LinearAttentionModel.Register(MLContext)"/>); <paramref name="ctx"/> is ML.NET's ModelLoadContext.
    /// </summary>
    public static LinearAttentionTransformer Create(IHostEnvironment env, object ctx)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(ctx);
        try
        {
            return Read(env, ctx);
        }
        catch (Exception e) when (e is not (ModelFormatException or DeviceUnavailableException or OutOfMemoryException or OperationCanceledException))
        {
            // A plain mlContext.Model.Load shows this message as it is (LinearAttentionModel.Load adds the file's name).
            throw new ModelFormatException(
                $"The ML.LinearAttention model in this file could not be read: {e.Message.Trim().TrimEnd('.')}. If the model uses an attention mechanism " +
                "or a fine-tuning method that another library registers, register it before loading; otherwise the file is damaged: save the model again.", e);
        }
    }

    private static LinearAttentionTransformer Read(IHostEnvironment env, object ctx)
    {
        ModelFiles.CheckFormatVersion(MLNetBridge.ModelVersions(ctx), LinearAttentionTransformer.FormatVersion);
        var r = MLNetBridge.BeginLoad(ctx, LinearAttentionTransformer.Version);
        byte task = r.ReadByte();
        string configJson = r.ReadString();
        var texts = Enumerable.Range(0, r.ReadInt32()).Select(_ => r.ReadString()).ToArray();
        var sequence = LinearAttentionTransformer.ReadOptional(r);
        int features = r.ReadInt32();
        var side = LinearAttentionTransformer.ReadOptional(r);
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

        var device = Device(env);
        TrainableModel model = task == LinearAttentionTransformer.ImageClassificationTask
            ? new VisionModel(VisionConfig.FromJson(configJson))
            : FineTuningRegistry.CreateModel(EncoderConfig.FromJson(configJson));
        try
        {
            if (!MLNetBridge.TryLoadBinaryStream(ctx, "Weights", w => model.load(w, strict: true)))
                throw new InvalidDataException("The saved ML.LinearAttention model has no 'Weights' entry; the file is damaged.");
            try { model.to(device); }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new DeviceUnavailableException($"The model was read but could not be moved to {device}: {e.Message.Trim()} Check that device " +
                                                     "(nvidia-smi, CUDA_VISIBLE_DEVICES, its free memory), or load on the CPU (MLContext.GpuDeviceId = null).", e);
            }
            return task switch
            {
                LinearAttentionTransformer.ClassificationTask => TextClassificationTransformer.Read(r, env, (SequenceModel)model, tokenizer, columns, maxLength, spec, inferenceBatch, device, score),
                LinearAttentionTransformer.RegressionTask => new SequenceRegressionTransformer(env, (SequenceModel)model, tokenizer, columns, maxLength, spec, inferenceBatch, device, score),
                LinearAttentionTransformer.ImageClassificationTask => ImageClassificationTransformer.Read(r, env, (VisionModel)model, columns, spec, inferenceBatch, device, score),
                _ => throw new InvalidDataException($"Unknown task code {task} in the saved ML.LinearAttention model."),
            };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    // The device comes from the MLContext, not the file: a failure here (no CUDA, a GPU index out of range, libtorch
    // missing) must not be reported as a damaged model.
    private static torch.Device Device(IHostEnvironment env)
    {
        try { return LinearAttentionTransformer.ResolveDevice(env, cpuThreads: null); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new DeviceUnavailableException($"The model cannot be loaded on the device this MLContext asks for: {e.Message.Trim()} The model " +
                                                 "file is not at fault; to load it on the CPU, set MLContext.GpuDeviceId = null or FallbackToCpu = true.", e);
        }
    }

}

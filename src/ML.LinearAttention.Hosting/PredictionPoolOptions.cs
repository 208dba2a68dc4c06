using Microsoft.ML.Data;

namespace Microsoft.ML.LinearAttention.Hosting;

/// <summary>Settings of a <see cref="LinearAttentionPredictionPool{TIn, TOut}"/>.</summary>
public sealed class PredictionPoolOptions
{
    /// <summary>Reload the model when its file is replaced or rewritten (default true).</summary>
    public bool WatchForChanges { get; set; } = true;

    /// <summary>Quiet time after the last file event before reloading (a copy or save raises several events).</summary>
    public TimeSpan ReloadDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Engines kept in the pool between requests (more are created under load and dropped afterwards).</summary>
    public int MaximumRetainedEngines { get; set; } = Environment.ProcessorCount * 2;

    /// <summary>Seed of the pool's MLContext (null = ML.NET's default).</summary>
    public int? Seed { get; set; }

    /// <summary>Settings of the pool's MLContext before the first load, e.g. <c>ml =&gt; ml.GpuDeviceId = 0</c>.</summary>
    public Action<MLContext>? ConfigureContext { get; set; }

    /// <summary>
    /// Numeric precision of every ML.LinearAttention transformer in the served model (null = Auto: bf16 on CUDA, fp32 on
    /// the CPU); applied to each version as it loads. Float16 needs a CUDA device (the pool's MLContext GpuDeviceId).
    /// </summary>
    public Training.InferencePrecision? Precision { get; set; }

    /// <summary>Schema of the input class (null = read from the input class and fitted to the model's saved input schema).</summary>
    public SchemaDefinition? InputSchemaDefinition { get; set; }
}

/// <summary>What a (re)load did.</summary>
/// <param name="Version">Model version now served (1 = the first load).</param>
/// <param name="Error">Why a reload failed (the previous model keeps serving), or null.</param>
/// <param name="Elapsed">Time spent loading.</param>
public sealed record ModelReloadedEventArgs(int Version, Exception? Error, TimeSpan Elapsed);

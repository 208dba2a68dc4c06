using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Microsoft.ML.LinearAttention.Hosting;

/// <summary>Registration of ML.LinearAttention serving in a <see cref="IServiceCollection"/>.</summary>
public static class LinearAttentionServiceCollectionExtensions
{
    /// <summary>
    /// Registers a singleton <see cref="LinearAttentionPredictionPool{TIn, TOut}"/> serving the model saved at
    /// <paramref name="modelPath"/>: thread-safe pooled engines over one shared model, reloaded when the file changes. The
    /// model loads when the pool is first resolved (resolve it at startup to fail fast); the container disposes it.
    /// </summary>
    /// <typeparam name="TIn">Input class (its members named like the model's input columns).</typeparam>
    /// <typeparam name="TOut">Output class (e.g. Score, PredictedLabel, or the column MapKeyToValue wrote).</typeparam>
    public static IServiceCollection AddLinearAttentionPredictionPool<TIn, TOut>(this IServiceCollection services, string modelPath,
        Action<PredictionPoolOptions>? configure = null) where TIn : class where TOut : class, new()
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
        var options = new PredictionPoolOptions();
        configure?.Invoke(options);
        services.TryAddSingleton(sp => new LinearAttentionPredictionPool<TIn, TOut>(modelPath, options,
            sp.GetService<ILoggerFactory>()?.CreateLogger<LinearAttentionPredictionPool<TIn, TOut>>()));
        return services;
    }
}

using Microsoft.ML.Runtime;

namespace Microsoft.ML.LinearAttention.Runtime;

/// <summary>Writes into <see cref="MLContext.Log"/> through ML.NET's public channel interfaces.</summary>
internal static class MLContextLog
{
    public static void Warning(MLContext mlContext, string component, string message)
    {
        using var channel = ((IHostEnvironment)mlContext).Register("LinearAttention." + component).Start(component);
        channel.Warning(MessageSensitivity.None, message);
    }

    public static void Info(MLContext mlContext, string component, string message)
    {
        using var channel = ((IHostEnvironment)mlContext).Register("LinearAttention." + component).Start(component);
        channel.Info(MessageSensitivity.None, message);
    }
}

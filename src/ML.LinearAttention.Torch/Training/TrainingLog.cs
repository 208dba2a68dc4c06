namespace Microsoft.ML.LinearAttention.Training;

/// <summary>Where training messages go (the estimators forward them to MLContext.Log).</summary>
public interface ITrainingLog
{
    void Info(string message);
    void Warning(string message);
}

/// <summary>Logs that need no host.</summary>
public static class TrainingLog
{
    /// <summary>Drops every message (e.g. the log of data-parallel ranks other than 0: only rank 0 reports).</summary>
    public static readonly ITrainingLog Silent = new SilentLog();

    private sealed class SilentLog : ITrainingLog
    {
        public void Info(string message) { }
        public void Warning(string message) { }
    }
}

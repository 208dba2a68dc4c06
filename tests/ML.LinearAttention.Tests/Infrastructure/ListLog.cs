using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Tests.Infrastructure;

/// <summary>A training log that keeps every line (info and warning alike), safe to write from several threads.</summary>
public sealed class ListLog : ITrainingLog
{
    private readonly List<string> _lines = new();

    /// <summary>A copy of the lines so far, in order.</summary>
    public List<string> Lines { get { lock (_lines) return new List<string>(_lines); } }

    public void Info(string message) { lock (_lines) _lines.Add(message); }
    public void Warning(string message) { lock (_lines) _lines.Add(message); }
}

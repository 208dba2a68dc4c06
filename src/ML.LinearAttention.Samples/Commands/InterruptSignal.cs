using System.Runtime.InteropServices;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// Ctrl+C (SIGINT) as a cancellation, for commands that honour it (<see cref="CommandRunner.StopsOnCancellation"/>):
/// the first one cancels <see cref="Token"/>, so training stops after the current batch and the command says what it
/// kept; a second one ends the process at once, as Ctrl+C normally does. The host is
/// built but never started, so its console lifetime does not handle the signal: without this, Ctrl+C killed the process
/// with nothing written and nothing said.
/// </summary>
public sealed class InterruptSignal : IDisposable
{
    private readonly CancellationTokenSource _cts;
    private readonly PosixSignalRegistration _registration;

    /// <param name="linked">Also cancels on this token (the host's ApplicationStopping).</param>
    /// <param name="error">Where the first Ctrl+C is acknowledged.</param>
    public InterruptSignal(CancellationToken linked, TextWriter error)
    {
        _cts = CancellationTokenSource.CreateLinkedTokenSource(linked);
        _registration = PosixSignalRegistration.Create(PosixSignal.SIGINT, context =>
        {
            if (_cts.IsCancellationRequested) return; // the second Ctrl+C: the default action ends the process
            context.Cancel = true;
            error.WriteLine("Ctrl+C: stopping cleanly (training stops after the current batch); Ctrl+C again stops at once, keeping nothing more.");
            _cts.Cancel();
        });
    }

    /// <summary>Cancelled by the first Ctrl+C (or the linked token).</summary>
    public CancellationToken Token => _cts.Token;

    public void Dispose()
    {
        _registration.Dispose();
        _cts.Dispose();
    }
}

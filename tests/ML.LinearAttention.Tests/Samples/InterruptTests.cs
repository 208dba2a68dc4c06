using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.SampleData;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

/// <summary>Ctrl+C during `train` (issue #22): a real SIGINT to the samples program in a child process.</summary>
public sealed class InterruptTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-sigint-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public async Task CtrlCStopsAfterTheBatchKeepsTheCheckpointAndSaysSo()
    {
        var data = TicketFiles.Write(P("tickets.csv"), SupportTickets.Generate(240, seed: 4));
        var args = TicketFiles.TinyTrainArgs(data, P("model.zip"));
        args[args.IndexOf("--epochs") + 1] = "50"; // far longer than the test waits
        args[args.IndexOf("--progress") + 1] = "lines";
        args.AddRange(new[] { "--log-every", "1", "--checkpoint-dir", P("checkpoints"), "--checkpoint-every", "2" });

        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(ServeAndCrashTests.SamplesPath());
        psi.ArgumentList.Add("train");
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = new List<string>();
        var stderr = new List<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.Add(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        long[] Steps() { lock (stdout) return stdout.Select(l => Regex.Match(l, @"step (\d+)/")).Where(m => m.Success).Select(m => long.Parse(m.Groups[1].Value)).ToArray(); }

        var clock = Stopwatch.StartNew();
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(3) && Steps().LastOrDefault() < 3) await Task.Delay(5);
        Assert.False(process.HasExited, "training ended before the signal:\n" + string.Join("\n", stdout.Concat(stderr)));
        using (var kill = Process.Start("kill", new[] { "-INT", process.Id.ToString() })) await kill.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        process.WaitForExit(); // drains the redirected output
        output.WriteLine(string.Join("\n", stdout.TakeLast(3).Concat(stderr)));

        Assert.Equal(130, process.ExitCode);
        long last = Steps().Last();
        var message = Assert.Single(stderr, l => l.StartsWith("Stopped", StringComparison.Ordinal));
        // Stopped after the batch in progress: the step it names is the last one trained and printed.
        Assert.StartsWith($"Stopped at step {last}/", message);
        Assert.Contains("no model was written", message);
        long newest = last / 2 * 2;
        Assert.Contains($"kept the checkpoint of step {newest} in {P("checkpoints")}", message);
        Assert.Contains("run the same command again to resume", message);
        Assert.Contains(stderr, l => l.StartsWith("Ctrl+C: stopping cleanly (training stops after the current batch)", StringComparison.Ordinal));
        Assert.DoesNotContain(stderr, l => l.Contains("fail:") || l.Contains("   at "));

        Assert.False(File.Exists(P("model.zip")));
        Assert.False(File.Exists(P("model.card.json")));
        Assert.Contains(Directory.GetFiles(P("checkpoints")), f => Path.GetFileName(f) == $"checkpoint-{newest:D10}-s.lacheckpoint");
        Assert.Empty(Directory.GetFiles(P("checkpoints"), "*.tmp-*"));
    }
}

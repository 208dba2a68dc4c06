using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.LinearAttention.SampleData;
using Microsoft.ML.LinearAttention.Samples.Commands;
using Microsoft.ML.LinearAttention.Training;
using Microsoft.ML.LinearAttention.Tests.Resilience;
using Xunit;
using Xunit.Abstractions;

namespace Microsoft.ML.LinearAttention.Tests.Samples;

public sealed class ServeAndCrashTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("la-serve-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public async Task ServeAnswersConcurrentRequestsOnLoopbackAndReloadsAReplacedModel()
    {
        var model = P("tickets.zip");
        ServeCommand.TrainTicketModel(model, TextWriter.Null, tickets: 160, epochs: 1, dimension: 16);
        await using var app = ServeCommand.Build(model, port: 0, o => o.ReloadDelay = TimeSpan.FromMilliseconds(200));
        await app.StartAsync();
        var address = ServeCommand.Addresses(app).Single();
        Assert.StartsWith("http://127.0.0.1:", address); // bound to the loopback interface only
        using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };

        var tickets = SupportTickets.Generate(48, seed: 9);
        var sw = Stopwatch.StartNew();
        var responses = await Task.WhenAll(tickets.Select(t => http.PostAsJsonAsync("/predict", new { title = t.Title, body = t.Body, numbers = t.Numbers })));
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var single = await Task.WhenAll(responses.Select(r => r.Content.ReadFromJsonAsync<ServeCommand.TicketResponse>()));
        output.WriteLine($"{tickets.Count} concurrent requests in {sw.ElapsedMilliseconds} ms; first: {single[0]!.Priority} {string.Join(", ", single[0]!.Probabilities)}");
        Assert.All(single, p =>
        {
            Assert.Contains(p!.Priority, SupportTickets.Priorities);
            Assert.Equal(SupportTickets.Priorities.OrderBy(x => x), p.Probabilities.Keys.OrderBy(x => x));
            Assert.Equal(1.0, p.Probabilities.Values.Sum(), 3);
            Assert.Equal(1, p.ModelVersion);
        });

        var batch = await (await http.PostAsJsonAsync("/predict/batch", tickets.Select(t => new { title = t.Title, body = t.Body, numbers = t.Numbers })))
            .Content.ReadFromJsonAsync<List<ServeCommand.TicketResponse>>();
        for (int i = 0; i < tickets.Count; i++)
        {
            Assert.Equal(single[i]!.Priority, batch![i].Priority);
            foreach (var (k, v) in single[i]!.Probabilities) Assert.Equal(v, batch[i].Probabilities[k], 1e-4); // a tolerance: rounding both to 4 decimals fails on a boundary
        }

        var bad = await http.PostAsJsonAsync("/predict", new { title = "x", body = "y", numbers = new[] { 1f, 2f } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("'numbers' must hold 4 values", await bad.Content.ReadAsStringAsync());

        // Replace the model file: the service swaps models without a restart.
        ServeCommand.TrainTicketModel(model, TextWriter.Null, tickets: 160, epochs: 2, dimension: 16);
        var deadline = Stopwatch.StartNew();
        int version = 1;
        while (version < 2 && deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(100);
            version = (await http.GetFromJsonAsync<Health>("/health"))!.Version;
        }
        Assert.Equal(2, version);
        var after = await (await http.PostAsJsonAsync("/predict", new { title = tickets[0].Title, body = tickets[0].Body, numbers = tickets[0].Numbers }))
            .Content.ReadFromJsonAsync<ServeCommand.TicketResponse>();
        Assert.Equal(2, after!.ModelVersion);
        await app.StopAsync();
    }

    private sealed record Health(string Status, string Model, int Version);

    [Fact]
    public async Task KilledTrainingResumesFromTheLastCheckpointLosingLessThanOneInterval()
    {
        const int interval = 3;
        var data = TicketFiles.Write(P("tickets.csv"), SupportTickets.Generate(240, seed: 4));
        var args = TicketFiles.TinyTrainArgs(data, P("model.zip"));
        args[args.IndexOf("--epochs") + 1] = "6";
        args[args.IndexOf("--progress") + 1] = "lines";
        args.AddRange(new[] { "--log-every", "1", "--checkpoint-dir", P("checkpoints"), "--checkpoint-every", interval.ToString() });

        // 1. The samples program trains in its own process; it is killed (SIGKILL) between two checkpoints.
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(SamplesPath());
        psi.ArgumentList.Add("train");
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var lines = new List<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add("stderr: " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        long Printed() { lock (lines) return lines.Select(l => Regex.Match(l, @"step (\d+)/")).Where(m => m.Success).Select(m => long.Parse(m.Groups[1].Value)).DefaultIfEmpty(0).Max(); }
        // Killed between two checkpoints (after step 7: the newest checkpoint is at step 6).
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(3) && Printed() < 7) await Task.Delay(5);
        Assert.False(process.HasExited, "the training process ended before it could be killed:\n" + string.Join("\n", lines));
        process.Kill(); // SIGKILL: no cleanup code runs
        await process.WaitForExitAsync();
        long printed = Printed();
        long checkpoint = LatestCheckpointStep();
        output.WriteLine($"killed after step {printed} (printed); newest checkpoint at step {checkpoint}; files: {string.Join(", ", Directory.GetFiles(P("checkpoints")).Select(Path.GetFileName))}");
        Assert.True(printed - checkpoint < interval, $"step {printed} was reached but the newest checkpoint is at {checkpoint}");
        Assert.False(File.Exists(P("model.zip")));

        // 2. The same command again resumes from that checkpoint and finishes.
        var steps = new List<long>();
        Assert.Equal(0, TrainCommand.Run(args, TextWriter.Null, default, new CheckpointTests.SyncProgress<TrainingProgress>(p => steps.Add(p.Step))));
        output.WriteLine($"resumed at step {steps[0]}, finished at step {steps[^1]}");
        Assert.Equal(checkpoint + 1, steps[0]);
        Assert.True(File.Exists(P("model.zip")));
        Assert.Empty(Directory.GetFiles(P("checkpoints"))); // a completed run leaves no checkpoint (and no temporary file)
    }

    private long LatestCheckpointStep()
    {
        var dir = P("checkpoints");
        if (!Directory.Exists(dir)) return 0;
        return Directory.GetFiles(dir, "checkpoint-*.lacheckpoint").Select(f => Regex.Match(Path.GetFileName(f), @"checkpoint-(\d+)-")).Where(m => m.Success)
            .Select(m => long.Parse(m.Groups[1].Value)).DefaultIfEmpty(0).Max();
    }

    internal static string SamplesPath()
    {
        // tests/ML.LinearAttention.Tests/bin/<Configuration>/<tfm>/ → src/ML.LinearAttention.Samples/bin/<Configuration>/<tfm>/
        var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var configuration = tfm.Parent!;
        var root = configuration.Parent!.Parent!.Parent!.Parent!;
        var path = Path.Combine(root.FullName, "src", "ML.LinearAttention.Samples", "bin", configuration.Name, tfm.Name, "ML.LinearAttention.Samples.dll");
        Assert.True(File.Exists(path), $"The samples program was not built at {path}; build the solution.");
        return path;
    }
}

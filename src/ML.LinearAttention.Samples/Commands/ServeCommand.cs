using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.ML.Data;
using Microsoft.ML.LinearAttention.Hosting;
using Microsoft.ML.LinearAttention.Samples.Demos;
using Microsoft.ML.LinearAttention.SampleData;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// `serve`: a minimal HTTP prediction service for the support-ticket model, on 127.0.0.1 only. It shows the hosting
/// package in an ASP.NET Core app: <c>AddLinearAttentionPredictionPool</c> registers pooled engines over one shared model,
/// requests are served concurrently, and replacing the model file swaps the model without a restart.
/// </summary>
public static class ServeCommand
{
    public const string Usage = """
          serve [--model FILE] [--port N] [--precision auto|fp32|bf16]
                                   HTTP predictions of the support-ticket classifier on http://127.0.0.1:PORT (default 5088):
                                   POST /predict {title, body, numbers[4]}, POST /predict/batch [..], GET /health.
                                   Without FILE (default tickets.zip) a small model is trained first (about a minute).
                                   Replacing FILE reloads the model without a restart.
        """;

    /// <summary>A prediction as the service returns it.</summary>
    public sealed record TicketResponse(string Priority, IReadOnlyDictionary<string, float> Probabilities, int ModelVersion);

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, CancellationToken cancellation)
    {
        var cl = new CommandLine("serve", args);
        var modelPath = Path.GetFullPath(cl.String("model", "tickets.zip")!);
        int port = cl.Int("port", 5088);
        var precision = cl.String("precision") is { } p ? Training.ScoringPrecision.Parse(p) : (Training.InferencePrecision?)null;
        if (precision == Training.InferencePrecision.Float16)
            throw new ArgumentException("--precision fp16 needs a CUDA device, and serve scores on the CPU: use fp32 or bf16.");
        cl.RejectUnknown();
        if (!File.Exists(modelPath))
        {
            output.WriteLine($"No model at {modelPath}: training a small support-ticket classifier first.");
            TrainTicketModel(modelPath, output);
        }
        await using var app = Build(modelPath, port, o => o.Precision = precision);
        await app.StartAsync(cancellation);
        output.WriteLine($"Serving {modelPath} on {string.Join(", ", Addresses(app))} (Ctrl+C to stop). Try:");
        output.WriteLine($"  curl -s {Addresses(app).First()}/predict -H 'Content-Type: application/json' -d '{{\"title\":\"Checkout page is down\",\"body\":\"All users get HTTP 500 since 9:00\",\"numbers\":[3,3.5,4,2]}}'");
        try { await Task.Delay(Timeout.Infinite, cancellation); }
        catch (OperationCanceledException) { }
        await app.StopAsync(CancellationToken.None);
        return 0;
    }

    /// <summary>The web app: Kestrel on 127.0.0.1:<paramref name="port"/> (0 = any free port), the pool and three endpoints.</summary>
    public static WebApplication Build(string modelPath, int port, Action<PredictionPoolOptions>? configurePool = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.ML.LinearAttention", LogLevel.Information);
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, port)); // local only
        builder.Services.AddLinearAttentionPredictionPool<SupportTicket, TextDemo.TicketPrediction>(modelPath, configurePool);
        var app = builder.Build();
        var pool = app.Services.GetRequiredService<LinearAttentionPredictionPool<SupportTicket, TextDemo.TicketPrediction>>(); // load now: fail fast

        app.MapGet("/health", () => Results.Ok(new { status = "ok", model = pool.ModelPath, version = pool.Version }));
        app.MapPost("/predict", (SupportTicket ticket) =>
        {
            var problem = Check(ticket);
            if (problem is not null) return Results.BadRequest(new { error = problem });
            var classes = ClassNames(pool);
            return Results.Ok(Response(pool.Predict(ticket), classes, pool.Version));
        });
        app.MapPost("/predict/batch", (SupportTicket[] tickets) =>
        {
            var problem = tickets.Select(Check).FirstOrDefault(p => p is not null);
            if (problem is not null) return Results.BadRequest(new { error = problem });
            var classes = ClassNames(pool);
            return Results.Ok(pool.PredictBatch(tickets).Select(p => Response(p, classes, pool.Version)).ToList());
        });
        return app;
    }

    /// <summary>The addresses Kestrel listens on (after start).</summary>
    public static IReadOnlyList<string> Addresses(WebApplication app)
        => app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? new List<string>();

    private static string? Check(SupportTicket? t)
    {
        if (t is null) return "The request body must be a ticket: {\"title\": ..., \"body\": ..., \"numbers\": [tier, log10 users, account years, open tickets]}.";
        t.Title ??= "";
        t.Body ??= "";
        t.Priority ??= "";
        if (t.Numbers is null || t.Numbers.Length != 4) return $"'numbers' must hold 4 values (tier, log10 affected users, account age in years, open tickets); got {t.Numbers?.Length ?? 0}.";
        return null;
    }

    private static string[] ClassNames(LinearAttentionPredictionPool<SupportTicket, TextDemo.TicketPrediction> pool)
    {
        VBuffer<ReadOnlyMemory<char>> names = default;
        pool.OutputSchema["Score"].GetSlotNames(ref names);
        return names.DenseValues().Select(n => n.ToString()).ToArray();
    }

    private static TicketResponse Response(TextDemo.TicketPrediction p, string[] classes, int version)
        => new(p.PredictedPriority, classes.Zip(p.Score).ToDictionary(x => x.First, x => x.Second), version);

    /// <summary>Trains the small ticket model the service needs when there is none (1,200 synthetic tickets).</summary>
    public static void TrainTicketModel(string path, TextWriter output, int tickets = 1200, int epochs = 3, int dimension = 32)
    {
        var sw = Stopwatch.StartNew();
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(SupportTickets.Generate(tickets, seed: 7));
        var options = new Estimators.TextClassificationOptions
        {
            ModelDimension = dimension, NumberOfLayers = 1, NumberOfHeads = 2, FeedForwardMultiplier = 2, MaxEpochs = epochs, BatchSize = 32,
            LearningRate = 3e-3, MaxSequenceLength = 256, CpuThreads = 1, LogEverySteps = 0,
        };
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", nameof(SupportTicket.Priority))
            .Append(ml.Transforms.LinearAttention.TextClassification(textColumnNames: new[] { "Title", "Body" }, featureColumnName: "Numbers", options: options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedPriority", "PredictedLabel"))
            .Fit(data);
        Reporting.AtomicFile.Write(path, temp => ml.Model.Save(model, data.Schema, temp));
        output.WriteLine($"Trained and saved {path} in {sw.Elapsed.TotalSeconds:F0} s.");
    }
}

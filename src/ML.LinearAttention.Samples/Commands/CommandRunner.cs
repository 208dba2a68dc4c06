using Microsoft.Extensions.Logging;
using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Samples.Demos;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>Dispatches the command line to a sample or benchmark.</summary>
public sealed class CommandRunner(ILogger<CommandRunner> logger)
{
    private static readonly string Usage = """
        usage: ML.LinearAttention.Samples [command] [options]
          demo                     (default) the text classifier end to end on built-in synthetic support tickets, offline:
                                   train, evaluate next to an ML.NET baseline, save, load, predict
          demo attention           compare attention mechanisms on a built-in synthetic sequence task
          bench kernels [options]  time every registered attention kernel next to SDPA (use on a GPU machine)
              --out DIR            where to write kernels.md / kernels.json (default docs/benchmarks)
              --tokens N           tokens per batch (default 32768); B = N / T
              --lengths a,b,c      sequence lengths (default 512,2048,8192,32768)
              --heads H --dim D    heads and head dimension (default 12, 64)
              --only a,b           only these mechanisms (registry names)
              --device cpu|cuda    (default cuda when available)
              --dtype bf16|fp32    (default bf16 on cuda, fp32 on cpu)
        """ + "\n" + TrainCommand.Usage + EvaluateCommand.Usage + PredictCommand.Usage + ServeCommand.Usage;

    public async Task<int> RunAsync(string[] args, CancellationToken cancellation)
    {
        string command = args.Length == 0 ? "demo" : args[0].ToLowerInvariant();
        try
        {
            switch (command)
            {
                case "demo" when args.Length > 1 && args[1] == "attention":
                    AttentionDemo.Run(Console.Out, cancellation);
                    return 0;
                case "demo":
                    TextDemo.Run(Console.Out);
                    return 0;
                case "bench" when args.Length > 1 && args[1] == "kernels":
                    return await Task.Run(() => KernelBenchmark.Run(KernelBenchmarkOptions.Parse(args.Skip(2).ToArray()), Console.Out), cancellation);
                case "train":
                    return await Task.Run(() => TrainCommand.Run(args.Skip(1).ToArray(), Console.Out, cancellation), cancellation);
                case "evaluate":
                    return EvaluateCommand.Run(args.Skip(1).ToArray(), Console.Out);
                case "predict":
                    return PredictCommand.Run(args.Skip(1).ToArray(), Console.Out);
                case "serve":
                    return await ServeCommand.RunAsync(args.Skip(1).ToArray(), Console.Out, cancellation);
                case "--help" or "-h" or "help":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    Console.Error.WriteLine($"Unknown command '{string.Join(' ', args)}'.");
                    Console.Error.WriteLine(Usage);
                    return 2;
            }
        }
        catch (ArgumentException e)
        {
            logger.LogError("{Message}", e.Message);
            return 2;
        }
        catch (FormatException e) // a damaged or foreign model file (ModelFormatException)
        {
            logger.LogError("{Message}", e.Message);
            return 2;
        }
        catch (IOException e)
        {
            logger.LogError("{Message}", e.Message);
            return 2;
        }
        catch (OperationCanceledException)
        {
            logger.LogWarning("Cancelled.");
            return 130;
        }
    }
}

using Microsoft.ML.LinearAttention.Samples.Benchmarks;
using Microsoft.ML.LinearAttention.Samples.Demos;
using Microsoft.ML.LinearAttention.Training;

namespace Microsoft.ML.LinearAttention.Samples.Commands;

/// <summary>
/// Dispatches the command line to a sample or benchmark. Errors of the user's input (bad options, files, columns) are
/// one plain line on <paramref name="error"/> and exit code 2; an interrupted command says what it kept and exits 130.
/// </summary>
public sealed class CommandRunner(TextWriter output, TextWriter error)
{
    /// <summary>The help text: the built-in commands, then each command's own usage block.</summary>
    public static readonly string Usage = """
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
              --cases a,b          only cases whose name contains one of these (e.g. sdpa,fused)
              --verify-fused       instead of timing: check the fused CUDA linear attention kernels against the
                                   naive twin (outputs and q/k/v gradients), PASS/FAIL per case, exit 1 on failure;
                                   with it, --only names parts: linear,causal,hedgehog,decay,rmsnorm,adamw
              --device cpu|cuda    (default cuda when available)
              --dtype bf16|fp32    (default bf16 on cuda, fp32 on cpu)
          bench vision [options]   images/s (train, inference) and peak memory of linear vs softmax patch encoders
              --out DIR            where to write vision.md / vision.json (default docs/benchmarks)
              --sizes a,b,c        image sizes in pixels (default 224,512,1024)
              --batch a,b,c        images per batch, one or one per size (default 64,16,4)
              --mixers a,b         encoders: registry names, or name:hybrid-plan (default linear,mala,softmax);
                                   prefix resnet18/ for the pretrained ResNet18 stem instead of patches
              --dim --layers --heads --patch   ViT size (default 384, 12, 6, 16)
              --device cpu|cuda --dtype bf16|fp32 --seconds S --commit SHA --machine TEXT
          bench training [options] train the text encoder end to end (ML.NET Fit) at each length; tokens/s, ms/step, peak memory, MFU
              --out DIR            where to write training.md / .json / -throughput.png / -memory.png (default docs/benchmarks)
              --mechanisms a,b     registry names, name{json}, linear_relu, hybrid (default softmax,hedgehog,linear_relu,hybrid,simple_gla,gated_deltanet)
              --hybrid PLAN        hybrid plan (default 3:1) over --hybrid-base NAME (default hedgehog)
              --lengths a,b        sequence lengths, K = 1024 (default 512,2K,8K,16K,32K,64K)
              --tokens N           tokens per optimizer step, B = N / T (default 65536)
              --layers L --hidden C --heads H --dropout P   encoder size (default 12, 768, 12, 0.1)
              --warmup N --steps N untimed and timed steps per point (default 2, 4)
              --seconds S          wall-clock bound per point; slower points stop early or are skipped (default 25)
              --budget S           wall-clock bound of the whole command; later points are skipped (default none)
              --no-pinned          copy batches from ordinary memory (synchronous) instead of pinned memory
              --isolate | --in-process   one child process per mechanism (default on CUDA) or all in this one
              --checkpointing      activation checkpointing on (otherwise only for points out of memory without it;
                                   --no-oom-checkpointing records OOM instead)
              --peak-tflops F      peak for MFU (default 989, H200 dense bf16)
              --device cpu|cuda --commit C --machine M
          bench cpu-training [options] CPU tokens/s of MiniLM full fine-tuning and the default text classifier on SST-2 rows,
                                   fast paths off and on in the same run, with a per-phase profile; writes training-cpu.md/.json
              --workloads minilm-full,default  --variants baseline,optimized  --rows N --warmup N --steps N --repeats N
              --threads N --data-folder DIR --out DIR --commit C --machine M
          bench profile [options]  where a training step's time goes (GEMMs, attention, norms, elementwise, optimizer, copies,
                                   other, host/idle): the step timed whole, then each component alone at its shapes; writes
                                   training-profile.md / .json (default softmax,linear_relu at 512,16K; bench training's options)
          bench inference [options] batched Transform rows/s through ML.NET (default linear_relu,hedgehog,softmax at 512,8K)
              same options, plus --rows N (rows of one timed pass), --timed-seconds S (passes repeat for S s, default 3) and --tf32 (allow TF32 matmuls);
              --precision fp32,bf16 (default fp32,bf16 on CUDA, fp32 on the CPU) scores at each precision and measures its
              agreement with fp32 on real AG News rows (--data-folder DIR, default ../shared/data; --agreement-train N
              rows trained on, default 4000, 0 = none; --agreement-rows N held-out rows compared, default 1000)
        """ + "\n" + InferenceCpuBenchmark.Usage + "\n" + """
          bench multigpu [options] data- and sequence-parallel training over NCCL, one process per GPU; scaling vs one GPU
                                   (writes multigpu.md / .json); --verify checks DP and SP against one device (PASS/FAIL)
              --gpus N (default 2) --mechanisms a,b (default linear_relu,hedgehog) --length T (data parallel, default 2048)
              --tokens N (per GPU per step, default 65536) --sp-lengths a,b (default 64K,128K) --sp-batch B (default 1)
              --layers --hidden --heads --warmup --steps --no-dp --no-sp --device cpu|cuda --out DIR --commit C --machine M
          bench quality [options]  every method on the shared data sets (../shared/data): FeaturizeText + SDCA, the default
                                   from-scratch model, MiniLM full fine-tune, linear probe, MP, MP+, LoRA, converted (+LoRA);
                                   writes docs/benchmarks/quality.md / .json (accuracy or R², macro-F1, log-loss, seconds)
              --datasets a,b (default sst2,imdb-reviews,github-issues-corefx,bbc-news,uci-sentiment-sentences,
                wikipedia-detox-250,stsb; also ag-news)   --sizes 1000,4000,all (training rows)   --test N (default 1000)
              --size small|standard   preset (small: 1,000 rows, 1 epoch, CPU smoke size)   --budget SECONDS (later points
                are listed as skipped)   --epochs N (default: as Fit chooses) --batch N --max-length N --lr X (full fine-tunes) --lora-lr X --psrp-lr X
              --convert-to NAME --transfer-steps N (conversion; default ConversionOptions')   --backbone NAME|DIR
              --only sdca,scratch,full,probe,mp,mp+,lora,converted,converted+lora   --device cpu|cuda   --threads N   --out DIR
          bench oom [options]      fault check on a GPU: batches far larger than the GPU holds must be split by the trainer's
                                   out-of-memory retry and training must finish; writes docs/benchmarks/oom.md (needs CUDA)
              --mechanism NAME --length T --batch ROWS --steps N --layers L --hidden C --heads H --commit C --machine M
          bench long-documents [options]  one document through Fit (one optimizer step, activation checkpointing) and
                                   Transform per mechanism, each in its own process; writes long-documents.md/.json
              --mechanisms linear_relu,hedgehog,softmax --length T (131072; at most 1048576) --layers L --hidden C --heads H
              --seconds S (bound per mechanism, 1200) --budget S (whole command) --device cpu|cuda --out DIR --commit C --machine M
        """ + "\n" + string.Join("\n", TransferCurveBenchmark.Usage, OnnxBenchmark.Usage, TrainCommand.Usage, ImageTrainCommand.Usage, TrainCommand.ConvertUsage, EvaluateCommand.Usage, PredictCommand.Usage, ServeCommand.Usage, ExportBackboneCommand.Usage, ExportOnnxCommand.Usage);

    /// <summary>
    /// Whether the command stops cleanly on cancellation (training after its current batch, the server after its
    /// requests). Only these take Ctrl+C over (<see cref="InterruptSignal"/>); for the others Ctrl+C ends the process
    /// at once, as it always did, rather than being acknowledged and then ignored.
    /// </summary>
    public static bool StopsOnCancellation(string[] args) => args.Length > 0 && args[0].ToLowerInvariant() switch
    {
        "train" or "convert" or "serve" => true,
        "demo" => args.Length > 1 && args[1] == "attention",
        _ => false,
    };

    public async Task<int> RunAsync(string[] args, CancellationToken cancellation)
    {
        string command = args.Length == 0 ? "demo" : args[0].ToLowerInvariant();
        try
        {
            switch (command)
            {
                case "demo" when args.Length > 1 && args[1] == "attention":
                    AttentionDemo.Run(output, cancellation);
                    return 0;
                case "demo":
                    TextDemo.Run(output);
                    return 0;
                case "bench" when args.Length > 1 && args[1] == "training":
                    return await Task.Run(() => TrainingBenchmark.Run(TrainingBenchmarkOptions.Parse("training", args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "cpu-training":
                    return await Task.Run(() => CpuTrainingBenchmark.Execute(CpuTrainingBenchmarkOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "profile":
                    return await Task.Run(() => StepProfile.Run(TrainingBenchmarkOptions.Parse("profile", args.Skip(2).ToArray(), StepProfile.Defaults), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "inference":
                    return await Task.Run(() => InferenceBenchmark.Run(TrainingBenchmarkOptions.Parse("inference", args.Skip(2).ToArray(), InferenceBenchmark.Defaults), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "inference-cpu":
                    return await Task.Run(() => InferenceCpuBenchmark.Run(args.Skip(2).ToArray(), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "kernels":
                    return await Task.Run(() => KernelBenchmark.Run(KernelBenchmarkOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "quality":
                    return await Task.Run(() => QualityBenchmark.Run(QualityBenchmarkOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "multigpu":
                    return await Task.Run(() => MultiGpuBenchmark.Run(MultiGpuOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "transfer":
                    return await Task.Run(() => TransferCurveBenchmark.Run(args.Skip(2).ToArray(), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "oom":
                    return await Task.Run(() => OutOfMemoryCheck.Run(OutOfMemoryCheckOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "long-documents":
                    return await Task.Run(() => LongDocumentBenchmark.Run(LongDocumentOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "bench" when args.Length > 1 && args[1] == "onnx":
                    return OnnxBenchmark.Run(OnnxBenchmark.Parse(args.Skip(2).ToList()), output);
                case "bench" when args.Length > 1 && args[1] == "vision":
                    return await Task.Run(() => VisionBenchmark.Run(VisionBenchmarkOptions.Parse(args.Skip(2).ToArray()), output), cancellation);
                case "train":
                    return await Task.Run(() => TrainCommand.Run(args.Skip(1).ToArray(), output, cancellation), CancellationToken.None);
                case "convert":
                    return await Task.Run(() => TrainCommand.RunConvert(args.Skip(1).ToArray(), output, cancellation), CancellationToken.None);
                case "evaluate":
                    return EvaluateCommand.Run(args.Skip(1).ToArray(), output);
                case "predict":
                    return PredictCommand.Run(args.Skip(1).ToArray(), output);
                case "serve":
                    return await ServeCommand.RunAsync(args.Skip(1).ToArray(), output, cancellation);
                case "export-backbone":
                    return ExportBackboneCommand.Run(args.Skip(1).ToList(), output);
                case "export-onnx":
                    return ExportOnnxCommand.Run(args.Skip(1).ToList(), output, error);
                case "--help" or "-h" or "help":
                    output.WriteLine(Usage);
                    return 0;
                default:
                    error.WriteLine($"error: unknown command '{string.Join(' ', args)}'; the commands are listed below.");
                    error.WriteLine(Usage);
                    return 2;
            }
        }
        // The user's input or files: one plain line naming the problem (the messages name the fix), no log prefix or stack.
        catch (Exception e) when (e is ArgumentException or FormatException or IOException or UnauthorizedAccessException or CheckpointMismatchException)
        {
            error.WriteLine("error: " + e.Message.ReplaceLineEndings(" "));
            return 2;
        }
        catch (OperationCanceledException e) when (cancellation.IsCancellationRequested)
        {
            error.WriteLine(e is TrainingStoppedException ? e.Message : "Stopped (Ctrl+C).");
            return 130;
        }
    }
}

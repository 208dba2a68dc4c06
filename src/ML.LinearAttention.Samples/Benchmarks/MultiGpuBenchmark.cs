using Microsoft.ML.LinearAttention.Samples.Reporting;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.LinearAttention.Distributed;
using Microsoft.ML.LinearAttention.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LinearAttention.Samples.Benchmarks;

/// <summary>
/// `bench multigpu`: scaling of training over several GPUs of one host through NCCL. Runs the one-GPU baseline and the
/// W-GPU data-parallel run of the `bench training` encoder (same model, steps and tokens per GPU), then the
/// sequence-parallel runs at long T (LASP-2 for the linear layers) next to one GPU, and writes multigpu.md / .json with
/// tokens/s, ms/step, peak memory, the share of GPU time in collectives per rank and the scaling efficiency
/// (W-GPU tokens/s ÷ (W × one-GPU tokens/s)). Every run starts one child process per GPU (this app again, with hidden
/// arguments; CUDA_VISIBLE_DEVICES gives each child its own GPU as cuda:0). `--verify` checks correctness instead.
/// On the CPU the ranks are threads (<see cref="ThreadCollectives"/>), so the command and its checks also run there.
/// </summary>
public static class MultiGpuBenchmark
{
    /// <summary>One run: its ranks' results combined.</summary>
    public sealed record Row(string Mode, string Mechanism, int Gpus, long T, long BatchPerGpu, double? MsPerStep, double? TokensPerSecond,
        double? PeakGiB, double?[] CommShare, string? Status);

    public static int Run(MultiGpuOptions o, TextWriter log)
    {
        TorchRuntime.EnsureLoaded();
        if (o.Rank is int rank) return Child(o, rank, log);
        bool cuda = o.Device is null ? torch.cuda.is_available() : o.Device == "cuda";
        if (cuda && !torch.cuda.is_available())
            throw new ArgumentException("--device cuda was asked for but CUDA is not available: " + DevicePolicy.DescribeMissingCudaForSamples());
        if (cuda && torch.cuda.device_count() < o.Gpus)
            throw new ArgumentException($"--gpus {o.Gpus} but this process sees {torch.cuda.device_count()} CUDA device(s).");
        string nccl = cuda ? (NcclCollectives.IsAvailable(out var why) ? $"NCCL {NcclCollectives.Version}" : throw new ArgumentException(why)) : "threads (ThreadCollectives, CPU)";
        log.WriteLine($"bench multigpu on {(cuda ? $"{o.Gpus} × CUDA" : $"CPU, {o.Gpus} thread ranks")} ({nccl}), " + (o.Verify ? "checks on a small fp32 encoder" : $"{o.Layers} layers × hidden {o.Hidden} × {o.Heads} heads"));
        if (o.Verify)
        {
            if (o.Gpus < 2) throw new ArgumentException("--verify compares 2 or more ranks with one device: use --gpus 2 or more.");
            RunRole(o, "verify", o.Gpus, cuda, log, out int code); // the ranks print the checks; rank 0's exit code is the verdict
            log.WriteLine(code == 0 ? "verify: PASS" : $"verify: FAIL (exit code {code})");
            return code == 0 ? 0 : 1;
        }
        var rows = new List<Row>();
        var meta = new Dictionary<string, string>
        {
            ["command"] = GeneratedMarkdown.SamplesCommand(o.CommandLine),
            ["commit"] = o.Commit, ["machine"] = o.Machine, ["collectives"] = nccl, ["libtorch"] = torch.__version__,
            ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
        };
        void Add(string role, int world)
        {
            var ranks = RunRole(o, role, world, cuda, log, out _);
            var row = Combine(ranks, role, world);
            rows.Add(row);
            log.WriteLine($"{row.Mode,-18} {row.Mechanism,-12} {row.Gpus} GPU(s) T={row.T,6} B/GPU={row.BatchPerGpu,3}: {TrainingBenchmark.Fmt(row.TokensPerSecond, "N0"),10} tok/s " +
                          $"{TrainingBenchmark.Fmt(row.MsPerStep, "F1"),8} ms/step  peak {TrainingBenchmark.Fmt(row.PeakGiB, "F2")} GiB  comm {string.Join("/", row.CommShare.Select(s => TrainingBenchmark.Fmt(s * 100, "F1") + "%"))} {row.Status}");
            MultiGpuReport.Write(o, meta, rows);
        }
        if (!o.SkipDataParallel)
            foreach (var mechanism in o.Mechanisms) { Add($"dp:{mechanism}", 1); if (o.Gpus > 1) Add($"dp:{mechanism}", o.Gpus); }
        if (!o.SkipSequenceParallel)
        {
            foreach (long t in o.SpLengths.Concat(o.SpLengths.Select(t => t / o.Gpus)).Where(t => t >= 1).Distinct().OrderBy(t => t)) Add($"sp:{t}", 1);
            if (o.Gpus > 1) foreach (long t in o.SpLengths) Add($"sp:{t}", o.Gpus);
        }
        log.WriteLine($"wrote multigpu.md and multigpu.json to {o.OutputDirectory}");
        return 0;
    }

    private static Row Combine(List<RankResult> ranks, string role, int world)
    {
        var ok = ranks.Where(r => r.Status is null).ToList();
        var first = ranks.FirstOrDefault();
        bool dp = role.StartsWith("dp:", StringComparison.Ordinal);
        string mode = dp ? (world == 1 ? "1 GPU" : "data parallel") : world == 1 ? "1 GPU (SP model)" : "sequence parallel";
        string mechanism = first?.Mechanism is { Length: > 0 } m ? m : dp ? role[3..] : MultiGpuWorker.SpLabel;
        long t = first?.T ?? (role.StartsWith("sp:", StringComparison.Ordinal) ? long.Parse(role[3..], CultureInfo.InvariantCulture) : 0);
        bool complete = ok.Count == world;
        return new Row(mode, mechanism, world, t, first?.BatchPerGpu ?? 0,
            complete ? ok.Max(r => r.MsPerStep) : null, complete ? ok.Sum(r => r.TokensPerSecond ?? 0) : null,
            ok.Count > 0 ? ok.Max(r => r.PeakGiB) : null, ranks.OrderBy(r => r.Rank).Select(r => r.CommShare).ToArray(),
            complete ? null : ranks.Select(r => r.Status).FirstOrDefault(s => s is not null) ?? $"{world - ranks.Count} rank(s) returned nothing");
    }

    /// <summary>Runs one role on <paramref name="world"/> ranks: child processes on CUDA, threads on the CPU.</summary>
    private static List<RankResult> RunRole(MultiGpuOptions o, string role, int world, bool cuda, TextWriter log, out int exitCode)
    {
        exitCode = 0;
        if (!cuda)
        {
            var results = new RankResult?[world];
            bool pass = true;
            void Body(ICollectives? c)
            {
                int r = c?.Rank ?? 0;
                if (role == "verify") { bool ok = MultiGpuVerify.Run(c!, CPU, log); lock (results) pass &= ok; }
                else results[r] = Work(o, role, c, CPU, log);
            }
            if (world == 1 && role != "verify") Body(null);
            else ThreadCollectives.Run(world, c => Body(c), TimeSpan.FromSeconds(o.ChildSeconds));
            exitCode = pass ? 0 : 1;
            return results.Where(r => r is not null).Select(r => r!).ToList();
        }
        var dir = Path.Combine(Path.GetTempPath(), $"multigpu-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var visible = (Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES") is { Length: > 0 } v ? v.Split(',') : Enumerable.Range(0, o.Gpus).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray());
            var children = Enumerable.Range(0, world).Select(r => Start(o, role, r, world, Path.Combine(dir, "nccl.id"), Path.Combine(dir, $"rank{r}.json"), visible[r], log)).ToList();
            // A rank that fails leaves the others waiting inside a collective: they are stopped 15 s after it exits.
            var limit = DateTime.UtcNow.AddSeconds(o.ChildSeconds);
            DateTime? failedAt = null;
            while (children.Any(c => !c.HasExited))
            {
                if (failedAt is null && children.Any(c => c.HasExited && c.ExitCode != 0)) failedAt = DateTime.UtcNow;
                bool timedOut = DateTime.UtcNow > limit, stuck = failedAt is { } f && DateTime.UtcNow - f > TimeSpan.FromSeconds(15);
                if (timedOut || stuck)
                {
                    log.WriteLine(timedOut ? $"{role}: a rank did not finish within {o.ChildSeconds:F0} s; stopping the run" : $"{role}: a rank failed; stopping the others");
                    foreach (var c in children) if (!c.HasExited) c.Kill(entireProcessTree: true);
                    break;
                }
                Thread.Sleep(100);
            }
            foreach (var child in children)
            {
                child.WaitForExit();
                if (child.ExitCode != 0 && exitCode == 0) exitCode = child.ExitCode;
            }
            var got = new List<RankResult>();
            for (int r = 0; r < world && role != "verify"; r++)
            {
                var file = Path.Combine(dir, $"rank{r}.json");
                got.Add(File.Exists(file) ? JsonSerializer.Deserialize<RankResult>(File.ReadAllText(file))!
                    : new RankResult(r, world, "", "", 0, 0, 0, null, null, null, null, $"process died (exit code {children[r].ExitCode})"));
            }
            children.ForEach(c => c.Dispose());
            return got;
        }
        finally { try { Directory.Delete(dir, recursive: true); } catch (IOException) { } }
    }

    private static Process Start(MultiGpuOptions o, string role, int rank, int world, string idFile, string results, string gpu, TextWriter log)
    {
        string exe = Environment.ProcessPath ?? throw new InvalidOperationException("The path of this process is unknown.");
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(typeof(MultiGpuBenchmark).Assembly.Location); // `dotnet ML.LinearAttention.Samples.dll …`
        string I(long v) => v.ToString(CultureInfo.InvariantCulture);
        foreach (var a in new[]
        {
            "bench", "multigpu", "--rank", I(rank), "--world", I(world), "--id-file", idFile, "--role", role, "--child-results", results,
            "--layers", I(o.Layers), "--hidden", I(o.Hidden), "--heads", I(o.Heads), "--warmup", I(o.Warmup), "--steps", I(o.Steps),
            "--length", I(o.Length), "--tokens", I(o.TokensPerGpu), "--sp-batch", I(o.SpBatch), "--gpus", I(world), "--sp-lengths", I(Math.Max(world, 1)),
            "--device", "cuda", "--commit", o.Commit, "--machine", "child",
        }) psi.ArgumentList.Add(a);
        psi.Environment["CUDA_VISIBLE_DEVICES"] = gpu.Trim();
        // Mandatory on the benchmark machine: no NVLink SHARP / multicast (see the device notes).
        psi.Environment["NCCL_NVLS_ENABLE"] = "0";
        psi.Environment["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1";
        psi.Environment["NVSHMEM_DISABLE_NVLS"] = "1";
        var child = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {exe}.");
        void Forward(object _, DataReceivedEventArgs e) { if (e.Data is { } line) lock (log) log.WriteLine(line); }
        child.OutputDataReceived += Forward;
        child.ErrorDataReceived += Forward;
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        return child;
    }

    /// <summary>A child process: rank <paramref name="rank"/> of one run, on cuda:0 (its own GPU).</summary>
    private static int Child(MultiGpuOptions o, int rank, TextWriter log)
    {
        var device = o.Device == "cpu" ? CPU : new Device(DeviceType.CUDA, 0);
        using var c = o.World > 1 ? NcclCollectives.Join(rank, o.World, o.IdFile ?? throw new ArgumentException("--id-file is required with --world > 1.")) : null;
        if (o.Role == "verify")
        {
            if (c is null) throw new ArgumentException("--verify needs at least 2 GPUs (--gpus 2).");
            bool pass = MultiGpuVerify.Run(c, device, log);
            c.Barrier();
            return pass ? 0 : 1;
        }
        var result = Work(o, o.Role ?? throw new ArgumentException("--role is required for a child."), c, device, log);
        if (o.ChildResults is not null) File.WriteAllText(o.ChildResults, JsonSerializer.Serialize(result));
        if (result.Status is not null && c is not null)
        {
            c.Abort(); // the other ranks may be inside a collective this rank will never join; the parent stops them
            return 4;
        }
        c?.Barrier();
        return 0;
    }

    private static RankResult Work(MultiGpuOptions o, string role, ICollectives? c, Device device, TextWriter log) =>
        role.StartsWith("dp:", StringComparison.Ordinal) ? MultiGpuWorker.DataParallelRun(o, c, device, role[3..], log)
        : role.StartsWith("sp:", StringComparison.Ordinal) ? MultiGpuWorker.SequenceParallelRun(o, c, device, long.Parse(role[3..], CultureInfo.InvariantCulture), log)
        : throw new ArgumentException($"Unknown role '{role}'.");
}

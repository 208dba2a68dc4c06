#!/usr/bin/env python3
"""Times the chunk kernels of flash-linear-attention (fla) for the mechanisms of issue #24 on this machine's GPU.

Given the path of an fla source tree (not installed: it is put first on sys.path), it runs each mechanism's chunk
kernel forward and backward at the shapes of `bench kernels` (bf16, H heads of D dims, B = tokens / T) and records
the median milliseconds between CUDA events after a warm-up, or the exception text when a kernel fails, as JSON.
make_table.py joins that JSON with docs/benchmarks/kernels.json into docs/benchmarks/fla-comparison.md.

    python3 tools/fla-comparison/fla_bench.py --fla PATH/TO/flash-linear-attention --out fla.json

Needs PyTorch with CUDA and Triton (fla's own requirements: einops, and transformers only for its layers, which this
script does not import). Nothing of fla is kept in this repository.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# Mechanism (our registry name) -> (fla module, function). mLSTM has no chunk kernel in fla/ops.
KERNELS = {
    "simple_gla": ("fla.ops.simple_gla", "chunk_simple_gla"),
    "lightning": ("fla.ops.lightning_attn", "chunk_lightning_attn"),
    "retnet": ("fla.ops.retention", "chunk_retention"),
    "gla": ("fla.ops.gla", "chunk_gla"),
    "mlstm": None,
    "deltanet": ("fla.ops.delta_rule", "chunk_delta_rule"),
    "gated_deltanet": ("fla.ops.gated_delta_rule", "chunk_gated_delta_rule"),
    "kda": ("fla.ops.kda", "chunk_kda"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fla", required=True, help="root of an fla source tree (the folder holding fla/)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--lengths", default="512,2048,8192,32768", help="comma-separated sequence lengths T")
    p.add_argument("--tokens", type=int, default=32768, help="tokens per batch (B = tokens / T)")
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--dim", type=int, default=64, help="head dimension (keys and values)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--mechanisms", default=",".join(KERNELS), help="comma-separated subset of " + ",".join(KERNELS))
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (Triton autotunes and compiles in them)")
    p.add_argument("--iters", type=int, default=20, help="timed runs; the median is recorded")
    p.add_argument("--machine", default=None, help="machine description for the table (default: the GPU's name)")
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    args.mechanisms = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    unknown = [m for m in args.mechanisms if m not in KERNELS]
    if unknown:
        p.error(f"unknown mechanism(s) {', '.join(unknown)}; choose from {', '.join(KERNELS)}")
    bad = [t for t in args.lengths if t <= 0 or args.tokens % t != 0]
    if bad:
        p.error(f"every length must divide --tokens {args.tokens}; {bad} do not")
    if not os.path.isdir(os.path.join(args.fla, "fla")):
        p.error(f"--fla {args.fla} has no fla/ folder; pass the root of a flash-linear-attention checkout")
    return args


def error_text(e):
    """One line naming the exception, short enough for a table cell."""
    first = (str(e).strip().splitlines() or [""])[0]
    text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def make_call(torch, name, fn, b, t, h, d, dtype, device):
    """Inputs ([B, T, H, ...], fla's layout) requiring gradients, and a call returning the output."""
    F = torch.nn.functional

    def leaf(x):
        return x.detach().requires_grad_(True)

    q = leaf(torch.randn(b, t, h, d, device=device, dtype=dtype))
    k = leaf(torch.randn(b, t, h, d, device=device, dtype=dtype))
    v = leaf(torch.randn(b, t, h, d, device=device, dtype=dtype))
    if name == "simple_gla":
        g = leaf(F.logsigmoid(torch.randn(b, t, h, device=device, dtype=torch.float32)) / 16)
        return [q, k, v, g], lambda: fn(q, k, v, g=g)[0]
    if name == "lightning":
        return [q, k, v], lambda: fn(q, k, v, layer_idx=0, num_layers=12)[0]
    if name == "retnet":
        return [q, k, v], lambda: fn(q, k, v)[0]
    if name == "gla":
        g = leaf(F.logsigmoid(torch.randn(b, t, h, d, device=device, dtype=torch.float32)) / 16)
        return [q, k, v, g], lambda: fn(q, k, v, g)[0]
    # Delta rule family: unit-norm keys (and queries), β in (0, 1).
    qn = leaf(F.normalize(q.float(), dim=-1).to(dtype))
    kn = leaf(F.normalize(k.float(), dim=-1).to(dtype))
    beta = leaf(torch.sigmoid(torch.randn(b, t, h, device=device, dtype=dtype)))
    if name == "deltanet":
        return [qn, kn, v, beta], lambda: fn(qn, kn, v, beta)[0]
    if name == "gated_deltanet":
        g = leaf(F.logsigmoid(torch.randn(b, t, h, device=device, dtype=torch.float32)))
        return [qn, kn, v, g, beta], lambda: fn(qn, kn, v, g, beta)[0]
    if name == "kda":
        g = leaf(F.logsigmoid(torch.randn(b, t, h, d, device=device, dtype=torch.float32)) / 16)
        return [qn, kn, v, g, beta], lambda: fn(qn, kn, v, g, beta)[0]
    raise ValueError(name)


def median_ms(torch, step, warmup, iters):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_case(torch, name, fn, args, t, dtype):
    b = args.tokens // t
    inputs, call = make_call(torch, name, fn, b, t, args.heads, args.dim, dtype, "cuda")

    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        o = call()
        torch.autograd.grad([o], inputs, [torch.ones_like(o)])

    return b, median_ms(torch, fwd, args.warmup, args.iters), median_ms(torch, fwd_bwd, args.warmup, args.iters)


def fla_commit(path):
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None


def run(args):
    sys.path.insert(0, os.path.abspath(args.fla))
    try:
        import torch
    except ImportError as e:
        sys.exit(f"fla_bench needs PyTorch with CUDA: {e}")
    if not torch.cuda.is_available():
        sys.exit("fla_bench needs a CUDA GPU (torch.cuda.is_available() is False)")
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    results = []
    for name in args.mechanisms:
        fn, load_error = None, None
        if KERNELS[name] is None:
            load_error = "fla has no chunk kernel for this mechanism (none in fla/ops)"
        else:
            try:
                module = __import__(KERNELS[name][0], fromlist=[KERNELS[name][1]])
                fn = getattr(module, KERNELS[name][1])
            except Exception as e:
                load_error = error_text(e)
        kernel = KERNELS[name][1] if KERNELS[name] else None
        for t in args.lengths:
            row = {"Mechanism": name, "Kernel": kernel, "T": t, "B": args.tokens // t, "FwdMs": None, "FwdBwdMs": None,
                   "Error": load_error}
            if fn is not None:
                try:
                    row["B"], row["FwdMs"], row["FwdBwdMs"] = time_case(torch, name, fn, args, t, dtype)
                except Exception as e:
                    row["Error"] = error_text(e)
                finally:
                    torch.cuda.empty_cache()
            print(f"{name:15} T={t:6}  " + (f"fwd {row['FwdMs']:.3f} ms  fwd+bwd {row['FwdBwdMs']:.3f} ms"
                                             if row["Error"] is None else "error: " + row["Error"]), flush=True)
            results.append(row)
    return {
        "CommandLine": "python3 tools/fla-comparison/fla_bench.py " + " ".join(sys.argv[1:]),
        "Machine": args.machine or torch.cuda.get_device_name(0),
        "Torch": torch.__version__, "Triton": triton_version, "Python": platform.python_version(),
        "FlaCommit": fla_commit(args.fla), "DType": args.dtype, "TokensPerBatch": args.tokens, "Heads": args.heads,
        "HeadDim": args.dim, "Warmup": args.warmup, "Iterations": args.iters,
        "Date": time.strftime("%Y-%m-%d", time.gmtime()), "Results": results,
    }


def main(argv=None):
    args = parse_args(argv)
    report = run(args)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

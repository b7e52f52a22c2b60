"""Scaling: DeepSpeed ZeRO-3 training of the 124M shape on 1, 2 and 4 GPUs (weak scaling).

For each GPU count n, one `torchrun --standalone --nproc_per_node n -m benchmarks.scaling --worker`
job (one process per GPU, NCCL; gloo on CPU): a random-init Qwen2 of the named shape (SDPA, bf16
on GPU), a fresh engine from model.engine.make_engine under infra/ds_configs/zero3.json (or
--ds-config), the same per-GPU micro-batch of random tokens at --seq on every rank, Hugging Face's
causal-LM loss, `--warmup` untimed steps then `--steps` timed ones. A step's time is the slowest
rank's (all-reduce max), the median over timed steps is reported.
tokens/s = n * micro_batch * seq / step; per-GPU efficiency = tokens/s(n) / (n * tokens/s(1)) at
the same micro-batch; MFU per GPU = 6 * N * tokens/s / n / 989e12 (as in benchmarks.train).

    python -m benchmarks.scaling [--gpus 1 2 4] [--micro-batches 16 32] [--seq 2048] [--ds-config zero3]
    python -m benchmarks.scaling --gpus 1 --profile   # also one profiled step: kernel time vs wall, host ops
    python -m benchmarks.scaling --shape tiny --gpus 1 --seq 64 --micro-batches 2   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# A CPU-sized shape for checking the script itself (gloo, one rank).
TINY = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=128, tie_word_embeddings=True)


def _build(shape: str, seq: int, device: str):
    import torch

    from benchmarks import common

    if shape == "tiny":
        common.SHAPES.setdefault("tiny", TINY)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return common.build_model(shape, dtype=dtype, device=device, max_positions=seq)


def worker(args) -> None:
    """One rank of one job: time ZeRO training steps for each micro-batch, rank 0 appends JSON lines."""
    import gc

    import torch
    import torch.distributed as dist

    from benchmarks.common import H200_PEAK_BF16, n_params
    from model.engine import make_engine

    os.environ["R1FLOW_DS_CONFIG"] = args.ds_config
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    for micro_batch in args.micro_batches:
        model = _build(args.shape, args.seq, device)
        model.config.use_cache = False
        n = n_params(model)
        engine = make_engine(model, lr=1e-4, micro_batch=micro_batch, grad_accum=1)
        world, rank = dist.get_world_size(), dist.get_rank()
        vocab = model.config.vocab_size
        g = torch.Generator(device=device).manual_seed(1000 + rank)
        batches = [torch.randint(0, vocab, (micro_batch, args.seq), device=device, generator=g) for _ in range(2)]
        times = []
        for i in range(args.warmup + args.steps):
            ids = batches[i % 2]
            if cuda:
                torch.cuda.synchronize()
            dist.barrier()
            t0 = time.perf_counter()
            loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
            engine.backward(loss)
            engine.step()
            if cuda:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        profile = _profile_step(engine, batches[0], cuda) if args.profile else None
        slowest = torch.tensor(times, dtype=torch.float64, device=device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        step_s = statistics.median(slowest.tolist())
        peak = torch.tensor([torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0], device=device)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
        tokens_per_s = world * micro_batch * args.seq / step_s
        row = {"shape": args.shape, "params_m": n / 1e6, "zero": engine.zero_optimization_stage(), "gpus": world,
               "micro_batch": micro_batch, "seq": args.seq, "step_s": step_s, "tokens_per_s": tokens_per_s,
               "tokens_per_s_per_gpu": tokens_per_s / world,
               "mfu_per_gpu": 6 * n * tokens_per_s / world / H200_PEAK_BF16,
               "peak_mem_gib": float(peak), "loss": float(loss.detach()), "step_min_s": min(slowest.tolist()),
               "step_max_s": max(slowest.tolist()), "profile": profile}
        if rank == 0:
            log.info("%s", row)
            with open(args.result, "a") as f:
                f.write(json.dumps(row) + "\n")
        del engine, model, batches
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        dist.barrier()


def _profile_step(engine, ids, cuda: bool) -> dict:
    """One profiled step: wall time against summed kernel time, and the busiest host-side ops."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    # Kernel entries only: an op's own entry also carries the device time of the kernels it launched.
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    kernel_s = sum(e.self_device_time_total for e in kernels) / 1e6
    host = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"wall_s": wall, "kernel_s": kernel_s, "kernels": sum(e.count for e in kernels),
            "host_top": [{"op": e.key[:70], "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3}
                         for e in host]}


def launch(n: int, args, result: str) -> tuple[int, float]:
    """Run one torchrun job on n processes; returns (exit code, wall seconds)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "benchmarks.scaling", "--worker", "--shape", args.shape, "--seq", str(args.seq),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--ds-config", args.ds_config,
           "--result", result, *(["--profile"] if args.profile else []), "--micro-batches", *map(str, args.micro_batches)]
    log.info("launch: %s", " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # torchrun sets these; the prelude's single-rank values would clash
    t0 = time.time()
    rc = subprocess.run(cmd, env=env, timeout=args.job_timeout).returncode
    return rc, time.time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shape", default="124m")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[16])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--ds-config", default="zero3")
    parser.add_argument("--job-timeout", type=float, default=240.0)
    parser.add_argument("--profile", action="store_true", help="also profile one step (kernel vs wall time)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        worker(args)
        return

    import torch

    from benchmarks.common import table

    # On CPU any count runs (gloo processes), for checking the multi-rank path.
    available = torch.cuda.device_count() if torch.cuda.is_available() else max(args.gpus)
    result = tempfile.mktemp(prefix="scaling_", suffix=".jsonl")
    jobs = []
    for n in args.gpus:
        if n > available:
            jobs.append({"gpus": n, "rc": "skipped", "note": f"only {available} device(s)"})
            continue
        try:
            rc, wall = launch(n, args, result)
        except subprocess.TimeoutExpired:
            rc, wall = "timeout", args.job_timeout
        jobs.append({"gpus": n, "rc": rc, "wall_s": wall})
    rows = [json.loads(line) for line in Path(result).read_text().splitlines()] if Path(result).exists() else []
    for row in rows:
        base = next((r for r in rows if r["gpus"] == 1 and r["micro_batch"] == row["micro_batch"]), None)
        if base:
            row["efficiency"] = row["tokens_per_s"] / (row["gpus"] * base["tokens_per_s"])
            row["speedup"] = row["tokens_per_s"] / base["tokens_per_s"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    from benchmarks.common import out_dir

    (out_dir() / f"scaling_{Path(args.ds_config).stem}.json").write_text(json.dumps({"device": device, "args": vars(args), "jobs": jobs,
                                                       "rows": rows}, indent=2) + "\n")
    for row in rows:
        prof = row.pop("profile", None)
        if prof:
            row["prof_wall_ms"], row["prof_kernel_ms"] = prof["wall_s"] * 1e3, prof["kernel_s"] * 1e3
            print(f"profile, ZeRO-{row['zero']} x{row['gpus']} mb{row['micro_batch']}: wall {prof['wall_s'] * 1e3:.1f} ms, "
                  f"kernels {prof['kernel_s'] * 1e3:.1f} ms ({prof['kernels']} launches); busiest host ops:")
            print(table(prof["host_top"], ["op", "calls", "self_cpu_ms"]))
    print(f"{device} x{available} | torch {torch.__version__}")
    print(table(jobs, ["gpus", "rc", "wall_s", "note"]))
    print(table(rows, ["shape", "params_m", "zero", "gpus", "micro_batch", "seq", "step_s", "step_min_s", "step_max_s",
                       "tokens_per_s", "tokens_per_s_per_gpu", "speedup", "efficiency", "mfu_per_gpu",
                       "peak_mem_gib", "prof_wall_ms", "prof_kernel_ms"]))


if __name__ == "__main__":
    main()

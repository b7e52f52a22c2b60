"""Training throughput: DeepSpeed ZeRO-2 bf16 on one GPU, tokens/s and MFU, sequence 2048.

For each model shape (random-init Qwen2 124M and Qwen2.5-0.5B, SDPA attention) and each
(micro-batch, activation checkpointing) setting: a fresh engine from model.engine.make_engine
(the trainers' path: ZeRO-2 from infra/ds_configs, bf16, fused torch AdamW), random tokens,
Hugging Face's causal-LM loss, `--warmup` untimed steps then `--steps` timed ones.
MFU = 6 * N * tokens/s / 989e12 (N = all parameters, tied embedding counted once; attention
FLOPs and checkpointing's recomputation not counted; 989 TFLOP/s = H200 SXM dense bf16
datasheet). The best setting per shape is marked.

    python -m benchmarks.train [--shapes 124m qwen2.5-0.5b] [--steps 8] [--compile --micro-batches 8 12]
"""

from __future__ import annotations

import argparse
import gc
import logging
import time

import torch

from benchmarks.common import H200_PEAK_BF16, build_model, device_line, n_params, table, write_json

log = logging.getLogger(__name__)

SWEEP = {
    "124m": [(16, False), (32, False)],
    "qwen2.5-0.5b": [(8, False), (12, False), (16, True)],
}
PROFILE = ("qwen2.5-0.5b", 8)  # the setting whose step is profiled


def _profile(engine, ids) -> list[dict]:
    """Device time of one training step by kernel name (top 15), with the step's total."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        torch.cuda.synchronize()
    rows = [{"kernel": e.key[:80], "calls": e.count, "ms": e.device_time_total / 1e3}
            for e in prof.key_averages() if e.device_time_total > 0]
    rows.sort(key=lambda r: -r["ms"])
    return [{"kernel": "TOTAL", "calls": sum(r["calls"] for r in rows), "ms": sum(r["ms"] for r in rows)}] + rows[:15]


def run(shape: str, micro_batch: int, checkpointing: bool, seq: int, steps: int, warmup: int,
        profile_out: list | None = None, compiled: bool = False) -> dict:
    from model.engine import make_engine

    model = build_model(shape, dtype=torch.bfloat16, max_positions=seq)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if compiled:
        model.compile()  # in place: DeepSpeed's engine calls the module, gradient hooks stay on the parameters
    n = n_params(model)
    engine = make_engine(model, lr=1e-4, micro_batch=micro_batch, grad_accum=1)
    vocab = model.config.vocab_size
    batches = [torch.randint(0, vocab, (micro_batch, seq), device="cuda") for _ in range(2)]
    times = []
    for i in range(warmup + steps):
        ids = batches[i % 2]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = engine(input_ids=ids, labels=ids, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    if profile_out is not None:
        profile_out.extend(_profile(engine, batches[0]))
    tokens_per_s = micro_batch * seq / step_s
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    del engine, model, batches
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return {"shape": shape, "params_m": n / 1e6, "micro_batch": micro_batch, "ckpt": checkpointing,
            "compiled": compiled, "seq": seq,
            "step_s": step_s, "tokens_per_s": tokens_per_s, "mfu": 6 * n * tokens_per_s / H200_PEAK_BF16,
            "peak_mem_gib": peak_gib, "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SWEEP))
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (module.compile())")
    parser.add_argument("--micro-batches", type=int, nargs="+", help="override the sweep's micro-batches (no checkpointing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    rows, profiles = [], {}
    for shape in args.shapes:
        sweep = [(m, False) for m in args.micro_batches] if args.micro_batches else SWEEP[shape]
        for micro_batch, ckpt in sweep:
            prof = profiles.setdefault(f"{shape} mb{micro_batch}", []) if (shape, micro_batch) == PROFILE else None
            try:
                rows.append(run(shape, micro_batch, ckpt, args.seq, args.steps, args.warmup, prof, args.compile))
            except torch.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
                rows.append({"shape": shape, "micro_batch": micro_batch, "ckpt": ckpt, "step_s": "OOM"})
            log.info("%s", rows[-1])
        done = [r for r in rows if r["shape"] == shape and isinstance(r.get("mfu"), float)]
        if done:
            max(done, key=lambda r: r["tokens_per_s"])["best"] = "*"
    write_json("train.json", {"device": device_line(), **vars(args), "peak_flops": H200_PEAK_BF16, "rows": rows,
                              "profiles": profiles})
    for name, prof in profiles.items():
        print(f"profile of one step, {name}:")
        print(table(prof, ["kernel", "calls", "ms"]))
    print(device_line())
    print(table(rows, ["shape", "params_m", "micro_batch", "ckpt", "compiled", "seq", "step_s", "tokens_per_s", "mfu",
                       "peak_mem_gib", "best"]))


if __name__ == "__main__":
    main()

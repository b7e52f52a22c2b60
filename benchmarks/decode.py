"""Decode benchmark: r1flow's rollout engine against Hugging Face `generate`, and the floor.

Setting (issue 5): random-init Qwen2 124M shape, bf16, batch 256, 64 prompt + 256 new tokens,
temperature 1. Prints one table: ms per decode step for r1flow's static-cache/CUDA-graph path
(eager blocks, and with the per-layer blocks torch.compiled), r1flow's eager loop,
`generate`, and the floor = max(bytes / copy bandwidth, FLOPs / matmul rate) averaged over the
steps, with bytes = weights + KV cache read per step, both ceilings measured in this run.
Before timing, checks the fast path against the eager loop (greedy, left-padded prompts).

    python -m benchmarks.decode              # on the GPU machine; writes $OUT/decode.json
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import time

import torch

from benchmarks.common import build_model, ceilings, device_line, n_params, table, time_cuda, write_json
from model import fast_decode
from model.rollout import _decode, _eval_mode, generate, sample_next

log = logging.getLogger(__name__)


def _prompts(batch: int, width: int, vocab: int, *, ragged: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch, width), generator=g)
    mask = torch.ones(batch, width, dtype=torch.long)
    if ragged:  # left padding: lengths width/2 .. width
        lengths = torch.randint(width // 2, width + 1, (batch,), generator=g)
        mask = (torch.arange(width)[None] >= width - lengths[:, None]).long()
        ids = ids.masked_fill(mask == 0, 0)
    return ids.cuda(), mask.cuda()


def check(model, batch: int, width: int, new: int, tag: str) -> dict:
    """Greedy fast path (graphs, default blocks) against the eager loop: first diverging step, logprob error."""
    ids, mask = _prompts(batch, width, model.config.vocab_size, ragged=True, seed=1)
    eos = torch.tensor([1], device="cuda")
    sample = functools.partial(sample_next, temperature=0.0, top_p=1.0)
    with _eval_mode(model), torch.inference_mode():
        _, e_tok, e_lp, _, _ = _decode(model, ids, mask, new, eos, 0, sample)
        _, f_tok, f_lp, _, _ = fast_decode.decode(model, ids, mask, new, eos, 0, sample, sample_key=("check",))
    fast_decode.clear()
    same = (e_tok == f_tok).long().cumprod(dim=1)  # (B, N) 1 while every token so far agrees
    first_diff = same.sum(dim=1)  # (B,) steps that agree before the first difference
    agree = same.bool()
    dlp = (e_lp - f_lp).abs()[agree]
    return {"check": tag, "rows": batch, "steps": new,
            "rows_identical": int((first_diff == new).sum()),
            "min_first_divergence": int(first_diff.min()), "median_first_divergence": float(first_diff.float().median()),
            "max_abs_dlogprob": float(dlp.max()), "mean_abs_dlogprob": float(dlp.mean())}


def _generate_once(model, ids, mask, new):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    generate(model, ids, mask, max_new_tokens=new, eos_token_id=1, pad_token_id=0, temperature=1.0)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def r1flow(model, ids, mask, new: int, *, compiled: bool, attention: str = "sdpa", mode: str = "",
           repeat: int = 3) -> dict:
    os.environ["R1FLOW_DECODE_COMPILE"] = "1" if compiled else "0"
    os.environ["R1FLOW_DECODE_COMPILE_MODE"] = mode
    os.environ["R1FLOW_DECODE_ATTENTION"] = attention
    fast_decode.clear()
    first = _generate_once(model, ids, mask, new)  # builds the decoder, captures the graphs
    total = min(_generate_once(model, ids, mask, new) for _ in range(repeat))
    (decoder,) = fast_decode._decoders.values()
    with torch.inference_mode():
        decoder._prefill(torch.nn.functional.pad(ids, (decoder.P - ids.shape[1], 0)),
                         torch.nn.functional.pad(mask, (decoder.P - mask.shape[1], 0)))
        lengths = [min(decoder.capacity, -(-(decoder.P + t + 1) // fast_decode._BUCKET) * fast_decode._BUCKET) for t in range(new - 1)]

        def loop():
            decoder.t.zero_()
            for length in lengths:
                decoder.graphs[length].replay()

        loop_s = time_cuda(loop, warmup=1, repeat=repeat)
    fast_decode.clear()
    os.environ["R1FLOW_DECODE_ATTENTION"] = "sdpa"
    os.environ["R1FLOW_DECODE_COMPILE_MODE"] = ""
    name = ("r1flow graphs + compiled blocks" if compiled else "r1flow graphs") + f", attention {attention}"
    name += f", {mode}" if mode else ""
    return {"engine": name, "ms_per_step": 1e3 * total / new, "decode_loop_ms_per_step": 1e3 * loop_s / (new - 1),
            "first_call_s": first}


def r1flow_eager(model, ids, mask, new: int) -> dict:
    os.environ["R1FLOW_FAST_DECODE"] = "0"
    try:
        total = _generate_once(model, ids, mask, new)
    finally:
        os.environ["R1FLOW_FAST_DECODE"] = "1"
    return {"engine": "r1flow eager loop", "ms_per_step": 1e3 * total / new}


def hf_generate(model, ids, mask, new: int, repeat: int = 2) -> dict:
    def once():
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                           max_new_tokens=new, min_new_tokens=new, eos_token_id=1, pad_token_id=0)
    once()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"engine": "HF generate (dynamic cache)", "ms_per_step": 1e3 * min(times) / new}


def floor(model, batch: int, width: int, new: int, ceil: dict) -> dict:
    """Per-step floor averaged over the steps: weights + KV read, FLOPs of the step."""
    c = model.config
    kv_per_col = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 2
    weight_bytes = n_params(model) * 2
    matmul_params = n_params(model) - (0 if c.tie_word_embeddings else c.vocab_size * c.hidden_size)
    bytes_s, flops_s = [], []
    for t in range(new - 1):
        cols = width + t + 1  # keys read by the step that feeds column width + t
        bytes_s.append((weight_bytes + batch * cols * kv_per_col) / ceil["copy_bytes_per_s"])
        flops = 2 * batch * matmul_params + 4 * batch * cols * c.hidden_size * c.num_hidden_layers
        flops_s.append(flops / ceil["bf16_flop_per_s"])
    per_step = sum(max(b, f) for b, f in zip(bytes_s, flops_s)) / len(bytes_s)
    return {"engine": "floor (bytes & FLOPs over measured ceilings)", "ms_per_step": 1e3 * per_step,
            "weights_ms": 1e3 * weight_bytes / ceil["copy_bytes_per_s"], "kv_ms_mean": 1e3 * (sum(bytes_s) / len(bytes_s)) - 1e3 * weight_bytes / ceil["copy_bytes_per_s"],
            "flops_ms_mean": 1e3 * sum(flops_s) / len(flops_s)}


def profile_step(model, ids, mask, new: int) -> list[dict]:
    """Kernel time of one un-graphed decode step (compiled blocks) at full window, by kernel (top 12)."""
    from torch.profiler import ProfilerActivity, profile

    sample = functools.partial(sample_next, temperature=1.0, top_p=1.0)
    with torch.inference_mode():
        decoder = fast_decode.StaticDecoder(model, ids.shape[0], ids.shape[1], new, sample=sample,
                                            eos=torch.tensor([1], device="cuda"), pad_token_id=0, use_graphs=False,
                                            compile_blocks=True, gumbel_temperature=1.0)
        decoder._step(decoder.capacity)
        decoder._prefill(ids, mask)
        decoder._step(decoder.capacity)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            decoder._step(decoder.capacity)
            torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        if e.device_time_total > 0:
            rows.append({"kernel": e.key[:70], "calls": e.count, "us": e.device_time_total})
    rows.sort(key=lambda r: -r["us"])
    total = sum(r["us"] for r in rows)
    calls = sum(r["calls"] for r in rows)
    return [{"kernel": "TOTAL", "calls": calls, "us": total}] + rows[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--attention", nargs="+", default=["sdpa"], help="attention variants to time (compiled blocks)")
    parser.add_argument("--skip-uncompiled", action="store_true")
    parser.add_argument("--compile-modes", nargs="*", default=[], help="extra torch.compile modes to time")
    parser.add_argument("--skip-eager", action="store_true", help="skip r1flow's eager loop on GPU (slow)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    ceil = ceilings()
    model = build_model("124m")
    result = {"device": device_line(), "params": n_params(model), **ceil, **vars(args)}
    checks = [check(model, args.batch, args.prompt, 128, "bf16")]
    model32 = build_model("124m", dtype=torch.float32)
    checks.append(check(model32, 64, args.prompt, 128, "fp32"))
    del model32
    result["checks"] = checks
    ids, mask = _prompts(args.batch, args.prompt, model.config.vocab_size, ragged=False)
    rows = [] if args.skip_uncompiled else [r1flow(model, ids, mask, args.new, compiled=False)]
    for attention in args.attention:
        try:
            rows.append(r1flow(model, ids, mask, args.new, compiled=True, attention=attention))
        except Exception as err:  # reported, not fatal: the table still prints
            log.exception("variant %s failed", attention)
            rows.append({"engine": f"r1flow compiled, attention {attention}", "ms_per_step": f"failed: {type(err).__name__}"})
    for mode in args.compile_modes:
        try:
            rows.append(r1flow(model, ids, mask, args.new, compiled=True, mode=mode))
        except Exception as err:
            log.exception("compile mode %s failed", mode)
            rows.append({"engine": f"r1flow compiled, {mode}", "ms_per_step": f"failed: {type(err).__name__}"})
    if not args.skip_eager:
        rows.append(r1flow_eager(model, ids, mask, args.new))
    if not args.skip_hf:
        rows.append(hf_generate(model, ids, mask, args.new))
    rows.append(floor(model, args.batch, args.prompt, args.new, ceil))
    prof = profile_step(model, ids, mask, args.new)
    result.update(rows=rows, profile=prof)
    write_json("decode.json", result)
    print(table(prof, ["kernel", "calls", "us"]))
    print(f"\n{result['device']} | {result['params'] / 1e6:.1f}M params | copy {ceil['copy_bytes_per_s'] / 1e12:.2f} TB/s"
          f" | bf16 matmul {ceil['bf16_flop_per_s'] / 1e12:.0f} TFLOP/s")
    print(table(checks, list(checks[0])))
    print(table(rows, ["engine", "ms_per_step", "decode_loop_ms_per_step", "first_call_s", "weights_ms", "kv_ms_mean", "flops_ms_mean"]))


if __name__ == "__main__":
    main()

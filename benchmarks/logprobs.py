"""Training-forward log-probs: the one-shot head against the chunked fused head (issue 5, item 2).

For each shape, a random-init Qwen2 (bf16, SDPA) and a batch shaped like the GRPO step (B rows of
P prompt + C completion tokens, random tokens, rows ending at random lengths): one call of
`model.rollout.completion_logprobs(..., with_entropy=True)` plus backward of a weighted sum, with
`chunk_rows=0` (full (B, C, V) logits) and with the default chunking (about 1 GiB of float32 logits
per chunk). Reports the agreement of the two (log-probs, entropy, parameter gradients), the median
forward + backward time and the peak memory above the model's own.

    python -m benchmarks.logprobs [--shapes 124m qwen2.5-0.5b]
"""

from __future__ import annotations

import argparse
import gc

import torch

from benchmarks.common import build_model, device_line, table, time_cuda, write_json

BATCH = {"124m": 256, "qwen2.5-0.5b": 64}


def run(shape: str, batch: int, prompt: int, completion: int, repeat: int) -> list[dict]:
    from model.rollout import _HEAD_CHUNK_ELEMENTS, completion_logprobs

    model = build_model(shape, dtype=torch.bfloat16, max_positions=prompt + completion)
    vocab = model.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)
    seqs = torch.randint(2, vocab, (batch, prompt + completion), device="cuda", generator=g)
    lengths = torch.randint(1, completion + 1, (batch, 1), device="cuda", generator=g)
    mask = torch.ones_like(seqs)
    mask[:, prompt:] = (torch.arange(completion, device="cuda")[None] < lengths).long()
    weights = torch.randn(batch, completion, device="cuda", generator=g)
    default_rows = max(1, _HEAD_CHUNK_ELEMENTS // vocab)

    def step(rows):
        logp, entropy = completion_logprobs(model, seqs, mask, prompt, 1.0, with_entropy=True, chunk_rows=rows)
        (logp * weights).sum().backward()
        return logp.detach(), entropy

    results = {}
    for rows in (0, default_rows):
        model.zero_grad(set_to_none=True)
        logp, entropy = step(rows)
        grads = torch.cat([p.grad.float().flatten() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(rows)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30

        def timed(rows=rows):
            model.zero_grad(set_to_none=True)
            step(rows)

        results[rows] = {"logp": logp, "entropy": entropy, "grads": grads, "peak": peak,
                         "s": time_cuda(timed, warmup=2, repeat=repeat)}
    one, chunked = results[0], results[default_rows]
    real = mask[:, prompt:].bool()
    d_logp = (chunked["logp"] - one["logp"])[real].abs()
    d_ent = (chunked["entropy"] - one["entropy"])[real].abs()
    rel_grad = float((chunked["grads"] - one["grads"]).norm() / one["grads"].norm())
    rows_out = []
    for rows, r in results.items():
        rows_out.append({"shape": shape, "B x C": f"{batch} x {completion}", "vocab": vocab,
                         "head": "one-shot" if rows == 0 else f"chunked ({rows} rows)",
                         "fwd_bwd_ms": r["s"] * 1e3, "peak_extra_gib": r["peak"],
                         "max_abs_dlogp": float(d_logp.max()) if rows else "",
                         "mean_abs_dlogp": float(d_logp.mean()) if rows else "",
                         "max_abs_dentropy": float(d_ent.max()) if rows else "",
                         "grad_rel_diff": rel_grad if rows else "",
                         "mean_logp": float(r["logp"][real].mean())})
    del model, results, one, chunked
    gc.collect()
    torch.cuda.empty_cache()
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(BATCH))
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--completion", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        try:
            rows += run(shape, BATCH[shape], args.prompt, args.completion, args.repeat)
        except torch.OutOfMemoryError as err:
            rows.append({"shape": shape, "head": f"OOM: {str(err)[:80]}"})
            gc.collect()
            torch.cuda.empty_cache()
    write_json("logprobs.json", {"device": device_line(), **vars(args), "rows": rows})
    print(device_line())
    print(table(rows, ["shape", "B x C", "vocab", "head", "fwd_bwd_ms", "peak_extra_gib", "max_abs_dlogp",
                       "mean_abs_dlogp", "max_abs_dentropy", "grad_rel_diff", "mean_logp"]))


if __name__ == "__main__":
    main()

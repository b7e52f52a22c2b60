"""GRPO step benchmark: r1flow's GRPOTrainer against TRL's GRPOTrainer, same process.

Setting (issue 5): random-init Qwen2 124M shape, bf16, 32 prompts x 8 generations = 256
completions of up to 256 tokens per step, 64-token prompts, temperature 1, beta 0 (no
reference model: TRL's default), one policy update per batch, a synthetic length reward
registered here. r1flow runs on a DeepSpeed ZeRO-2 engine (model.engine.make_engine), TRL on its
own accelerate loop without vLLM. Both models start from the same seed. The first step
(graph capture, compilation, allocator warm-up) is excluded; the median of the rest is shown.
mean |ratio - 1| is the training forward's log-prob ratio to the rollout engine's at the first
inner iteration (bf16 agreement of the two paths).

    python -m benchmarks.grpo_step [--steps 4] [--skip-trl]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import tempfile
import time

import torch

from benchmarks.common import build_model, device_line, table, write_json

log = logging.getLogger(__name__)

PROMPT_TOKENS = 64
REWARD = "bench_length"


def _length_reward(completions, **_):
    """Longer completions score higher (characters / 1000): a reward with spread, no parsing."""
    return [len(c) / 1000 for c in completions]


def _register_reward() -> None:
    from model.rewards import get_reward, register

    try:
        get_reward(REWARD)
    except KeyError:
        register(REWARD)(_length_reward)


def _tokenizer():
    from model.factory import train_tokenizer

    return train_tokenizer([f"{i} {i * 7} think answer" for i in range(400)], vocab_size=300)


def _digit_prompts(n: int, seed: int = 0) -> list[str]:
    """n strings of PROMPT_TOKENS digits (digits are single tokens: exactly PROMPT_TOKENS ids each)."""
    g = torch.Generator().manual_seed(seed)
    return ["".join(map(str, torch.randint(0, 10, (PROMPT_TOKENS,), generator=g).tolist())) for _ in range(n)]


def r1flow(steps: int, prompts: list[str], micro_batch: int) -> dict:
    from model.engine import make_engine
    from model.grpo import GRPOArgs, GRPOTrainer
    from model.moe import RouterLoss

    tok = _tokenizer()
    model = build_model("124m", dtype=torch.bfloat16)
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    rows = [{"prompt": p, "answer": "0"} for p in prompts]
    args = GRPOArgs(steps=steps, prompts_per_step=32, num_generations=8, beta=0.0, num_iterations=1, max_completion_length=256,
                    temperature=1.0, rewards={REWARD: 1.0}, micro_batch=micro_batch, checkpoint_every=0,
                    sample_every=0)
    out = tempfile.mkdtemp(prefix="grpo_bench_")
    trainer = GRPOTrainer(model, tok, rows, args, out)
    # The benchmark's prompts are the digit strings themselves, not the R1-Zero template around them.
    trainer.prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    trainer.engine = make_engine(model, lr=args.lr, micro_batch=micro_batch, grad_accum=256 // micro_batch,
                                 max_grad_norm=args.max_grad_norm)
    trainer.router = RouterLoss(trainer.engine)  # what run_loop installs (a no-op on this dense model)
    metrics = []
    for step in range(1, steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m = trainer.train_step(step)
        torch.cuda.synchronize()
        m["wall_s"] = time.perf_counter() - t0
        metrics.append(m)
        log.info("r1flow step %d: %.3f s (rollout %.3f s), length %.1f, ratio_dev %.2e",
                 step, m["wall_s"], m["rollout_s"], m["response_length"], m["ratio_dev"])
    timed = metrics[1:]
    step_s = statistics.median(m["wall_s"] for m in timed)
    completions = 256
    import os

    chunk = os.environ.get("R1FLOW_LOGPROB_CHUNK", "auto")
    return {"trainer": f"r1flow GRPOTrainer (ZeRO-2, micro-batch {micro_batch})", "logprob_chunk": chunk,
            "step_s": step_s, "update_s": statistics.median(m["wall_s"] - m["rollout_s"] for m in timed),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
            "completions_per_s": completions / step_s,
            "rollout_s": statistics.median(m["rollout_s"] for m in timed),
            "mean_completion_tokens": statistics.mean(m["response_length"] for m in timed),
            "ratio_dev": timed[0]["ratio_dev"], "first_step_s": metrics[0]["wall_s"]}


def trl(steps: int, prompts: list[str]) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = _tokenizer()
    model = build_model("124m", dtype=torch.bfloat16)
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id

    class Clock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, *a, **k):
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t0)

    clock = Clock()
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl_bench_"), per_device_train_batch_size=256, num_generations=8,
        gradient_accumulation_steps=1, max_completion_length=256, temperature=1.0, top_p=1.0, top_k=0,
        beta=0.0, num_iterations=1, learning_rate=2e-4, bf16=True, max_steps=steps, logging_steps=1,
        report_to="none", save_strategy="no", use_vllm=False, shuffle_dataset=False, seed=0,
    )
    dataset = Dataset.from_dict({"prompt": prompts})
    trainer = GRPOTrainer(model=model, reward_funcs=[_length_reward], args=config, train_dataset=dataset,
                          processing_class=tok, callbacks=[clock])
    trainer.train()
    timed = clock.times[1:]
    step_s = statistics.median(timed)
    return {"trainer": "TRL GRPOTrainer (no vLLM)", "step_s": step_s, "completions_per_s": 256 / step_s,
            "first_step_s": clock.times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--logprob-chunk", nargs="+", default=["auto"],
                        help="R1FLOW_LOGPROB_CHUNK settings to run r1flow under: auto (chunked on CUDA), 0 (one-shot), N rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    _register_reward()
    prompts = _digit_prompts(256)
    rows = []
    import os

    for micro_batch in args.micro_batch:
        for chunk in args.logprob_chunk:
            if chunk == "auto":
                os.environ.pop("R1FLOW_LOGPROB_CHUNK", None)
            else:
                os.environ["R1FLOW_LOGPROB_CHUNK"] = chunk
            torch.cuda.reset_peak_memory_stats()
            rows.append(r1flow(args.steps, prompts, micro_batch))
            gc.collect()
            torch.cuda.empty_cache()
    os.environ.pop("R1FLOW_LOGPROB_CHUNK", None)
    if not args.skip_trl:
        try:
            rows.append(trl(args.steps, prompts))
        except Exception as err:  # reported in the table: the r1flow row still counts
            log.exception("TRL run failed")
            rows.append({"trainer": "TRL GRPOTrainer", "step_s": f"failed: {type(err).__name__}: {err}"[:120]})
    if isinstance(rows[-1].get("completions_per_s"), float) and "TRL" in rows[-1]["trainer"]:
        for row in rows[:-1]:
            row["speedup_vs_trl"] = row["completions_per_s"] / rows[-1]["completions_per_s"]
    write_json("grpo_step.json", {"device": device_line(), **vars(args), "rows": rows})
    print(device_line())
    print(table(rows, ["trainer", "logprob_chunk", "step_s", "completions_per_s", "rollout_s", "update_s",
                       "peak_mem_gib", "mean_completion_tokens",
                       "ratio_dev", "first_step_s", "speedup_vs_trl"]))


if __name__ == "__main__":
    main()

"""Where a CPU run's time goes, one thread: the training step and the decode loop, each with and
without the change that made it cheaper (issue 13: ``make run`` in 10 minutes on 2 cores).

Three tables, on the default base (``--model``, e.g. what ``r1flow stage base`` or ``make run``
wrote; its tokenizer and corpus settings are params.yaml's):

1. SFT step (the base's pretraining: 64 corpus rows a step): rows padded to the longest
   (model/sft.py ``collate``) against packed (``pack``); token columns and seconds a step.
2. Decode (the rollout engine, model/rollout.py ``_decode``): 128 completions of up to 128 tokens
   at temperature 1 (an r1_zero step's rollout), the whole batch decoded to its longest
   completion against finished rows leaving the batch; seconds, and whether the tokens agree.
3. GRPO step at r1_zero's params.yaml settings: seconds for rollouts, rewards and the rest
   (reference and policy passes, the update), median over steps 2..N.

    python -m benchmarks.cpu_steps --model artifacts/base/model [--repeat 5] [--grpo-steps 4]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch

from benchmarks.common import table


SFT = ["batch", "real tokens", "token columns", "s / step"]
DECODE = ["decode", "mean length", "columns", "s", "same tokens"]
GRPO = ["prompts x G", "mean length", "rollout s", "reward s", "passes + update s", "step s"]


def _sft(model, tok, rows, repeat: int) -> list[dict]:
    from model.sft import collate, completion_loss, encode_rows, pack

    examples = encode_rows(tok, rows, 256)
    rng = random.Random(0)
    batches = [rng.sample(examples, 64) for _ in range(repeat + 1)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    out = []
    for name, batcher in (("padded (collate)", collate), ("packed (pack)", pack)):
        times, columns = [], []
        for batch_rows in batches:
            t0 = time.perf_counter()
            batch = batcher(batch_rows, tok.pad_token_id)
            loss, _ = completion_loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
            columns.append(batch["input_ids"].numel())
        real = sum(len(p) + len(c) for p, c in batches[0])
        out.append(dict(zip(SFT, [name, real, round(statistics.mean(columns)), statistics.median(times[1:])])))
    return out


def _decode(model, tok, rows, repeat: int) -> list[dict]:
    from data.formatting import render_prompts
    from model import rollout
    from model.rollout import generate, left_pad, stop_token_ids

    ids, mask = left_pad(render_prompts(tok, [r["prompt"] for r in rows[:128]]), tok.pad_token_id)
    stops = stop_token_ids(model, tok)
    out, first = [], None
    for name, share in (("whole batch to its longest", 0.0), ("finished rows leave", rollout._COMPACT_SHARE)):
        saved, rollout._COMPACT_SHARE = rollout._COMPACT_SHARE, share
        try:
            times = []
            for i in range(repeat):
                t0 = time.perf_counter()
                r = generate(model, ids, mask, max_new_tokens=128, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                             temperature=1.0, generator=torch.Generator().manual_seed(i))
                times.append(time.perf_counter() - t0)
                if i == 0:
                    tokens = r.completion_ids
        finally:
            rollout._COMPACT_SHARE = saved
        first = tokens if first is None else first
        same = "yes" if torch.equal(first, tokens) else "NO"
        out.append(dict(zip(DECODE, [name, float(r.completion_mask.sum(1).float().mean()), r.completion_ids.shape[1],
                                     statistics.median(times), same])))
    return out


def _grpo(path: str, steps: int) -> list[dict]:
    from infra.config import load_stage_config
    from model import factory
    from model.grpo import GRPOTrainer
    from model.stages.r1_zero import R1ZeroConfig

    tok, model, _ = factory.load_pinned(path, "")
    cfg = load_stage_config(R1ZeroConfig, "r1_zero", "params.yaml",
                            [f"steps={steps}", "checkpoint_every=0", "sample_every=0"])
    prompts, _ = cfg.training_rows(cfg.dataset_size, cfg.seed, "thinking")
    with tempfile.TemporaryDirectory() as out:
        trainer = GRPOTrainer(model, tok, prompts, cfg, out)
        trainer.train()
        rows = trainer.steps.read()[1:]
    med = {k: statistics.median(r[k] for r in rows) for k in ("step_s", "rollout_s", "reward_s", "response_length")}
    rest = med["step_s"] - med["rollout_s"] - med["reward_s"]
    return [dict(zip(GRPO, [f"{cfg.prompts_per_step} x {cfg.num_generations}", med["response_length"],
                            med["rollout_s"], med["reward_s"], rest, med["step_s"]]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="artifacts/base/model", help="A trained base (its folder).")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--grpo-steps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from data.synthetic import Noise, base_corpus
    from infra.config import load_params
    from model import factory

    base = load_params("params.yaml")["base"]
    rows = base_corpus(2000, mix={"arithmetic": 0.75, "countdown": 0.25},
                       noise=Noise(direct=base.get("direct", 0.0), check=base.get("check", 0.0)), seed=1)
    tok, model, _ = factory.load_pinned(args.model, "")
    print("1. SFT step, 64 corpus rows, one thread")
    print(table(_sft(model, tok, rows, args.repeat), SFT))
    tok, model, _ = factory.load_pinned(args.model, "")  # untouched by the SFT steps
    print("\n2. Decode, 128 completions up to 128 tokens, temperature 1")
    print(table(_decode(model, tok, rows, args.repeat), DECODE))
    print("\n3. GRPO step at r1_zero's settings (median of steps 2..N)")
    print(table(_grpo(args.model, args.grpo_steps), GRPO))


if __name__ == "__main__":
    main()

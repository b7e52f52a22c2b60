"""Run by tests/test_distributed.py under torchrun: two GRPO steps, then a parameter digest.

    torchrun --nproc_per_node 2 tests/dist_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from data.synthetic import make_rows
from infra import launch
from model import factory
from model.grpo import GRPOArgs, GRPOTrainer


def digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(model_dir: str, out_dir: str) -> None:
    torch.manual_seed(0)
    model, tok = factory.load_model(model_dir), factory.load_tokenizer(model_dir)
    initial = digest(model)
    args = GRPOArgs(steps=2, prompts_per_step=4, num_generations=4, micro_batch=4, max_completion_length=10,
                    rewards={"_length": 1.0}, beta=0.04, lr=1e-3, checkpoint_every=0, sample_every=0)
    rows = make_rows("arithmetic", "train", 32)
    trainer = GRPOTrainer(model, tok, rows, args, Path(out_dir) / f"rank{launch.rank()}")
    metrics = trainer.train()
    result = {"rank": launch.rank(), "world": launch.world_size(), "initial": initial,
              "final": digest(trainer.engine.module), "zero_stage": trainer.engine.zero_optimization_stage(),
              "reward": metrics["reward"]}
    Path(out_dir, f"rank{launch.rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    from model.rewards import register

    # Rewards that differ per completion, so each rank gets a non-zero gradient of its own.
    register("_length")(lambda completions, **_: [len(c) / 50 for c in completions])
    main(*sys.argv[1:3])

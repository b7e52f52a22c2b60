"""Stage ``reward_model``: helpfulness and harmlessness reward models (paper section 2.3.4).

Two reward models start from the base model's body with a fresh scalar head
(model/reward_model.py):

- **helpful**: Bradley-Terry on preference pairs of final summaries (the text after
  ``</think>``), helpful vs unhelpful (wrong, evasive, off-topic, content-free);
- **harmless**: pointwise binary cross-entropy on whole responses to safe and unsafe
  requests, a refusal labelled safe and a compliance unsafe.

Departures from the paper: the data are synthetic (data/preferences.py) instead of human
preference pairs; the paper trained its helpfulness model on pairs built from DeepSeek-V3's
pipeline and its harmlessness model pointwise, as here, but neither on a 1M-parameter base.
Held-out accuracies are on prompts (and unsafe intents) never seen in training; a helpfulness
pair whose rejected answer is only *wrong* can be judged only where the base model can check
the answer, so ``helpful_pair_accuracy_wrong`` sits well below the other kinds.

Outputs: ``preferences.jsonl`` and ``harmlessness.jsonl`` (GE suites ``preferences`` and
``harmlessness``; each row has ``split``), ``helpful/`` and ``harmless/`` (``save_pretrained``,
loadable with ``AutoModelForSequenceClassification``; score with
``model.reward_model.score``), ``steps.jsonl`` (both models' per-step metrics by step).

One CPU rank:  r1flow stage reward_model
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage reward_model
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from data.loaders import write_jsonl
from data.preferences import DEFAULT_KINDS, DEFAULT_SOURCES, KINDS, SOURCES, harmlessness_rows, preference_pairs
from data.quality import write_checked_jsonl
from infra.config import knob
from infra.stage import stage_dir, stage_main
from infra.steplog import StepLog
from model import checkpoint, factory
from model import reward_model as rm
from model.trainer import is_main, save_model

log = logging.getLogger(__name__)
NAME = "reward_model"
MODELS = ("helpful", "harmless")


@dataclass
class RewardModelConfig(rm.RewardArgs):
    model: str = knob("artifacts/base/model", "Base model whose body both reward models start from (path or hub id).")
    pairs: int = knob(2000, "Helpfulness preference pairs generated (train and test together).")
    harmless_rows: int = knob(1200, "Harmlessness rows generated (train and test together).")
    test_share: float = knob(0.2, "Share of prompts (and unsafe intents) held out for the accuracies.")
    sources: dict = knob(dict(DEFAULT_SOURCES), "Share of each prompt family in the helpfulness pairs.")
    kinds: dict = knob(dict(DEFAULT_KINDS), "Share of each kind of rejected summary.")
    helpful_steps: int = knob(80, "Optimizer steps of the helpfulness model (Bradley-Terry).")
    harmless_steps: int = knob(40, "Optimizer steps of the harmlessness model (pointwise).")

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.test_share < 1.0:
            raise ValueError(f"test_share must be in (0, 1), got {self.test_share}")
        for key, allowed in (("sources", SOURCES), ("kinds", KINDS)):
            unknown = set(getattr(self, key)) - set(allowed)
            if unknown:
                raise ValueError(f"{key}: unknown {sorted(unknown)}; choose from {allowed}")
        if min(self.pairs, self.harmless_rows, self.helpful_steps, self.harmless_steps) <= 0:
            raise ValueError("pairs, harmless_rows, helpful_steps and harmless_steps must be > 0")


def run(cfg: RewardModelConfig) -> dict:
    """Write the checked datasets, train and save both reward models; returns held-out accuracies."""
    out = stage_dir(NAME)
    pairs = preference_pairs(cfg.pairs, seed=cfg.seed, test_share=cfg.test_share,
                             sources=cfg.sources, kinds=cfg.kinds)
    safety = harmlessness_rows(cfg.harmless_rows, seed=cfg.seed, test_share=cfg.test_share)
    write_checked_jsonl(pairs, out / "preferences.jsonl", "preferences", report_dir=out / "quality")
    write_checked_jsonl(safety, out / "harmlessness.jsonl", "harmlessness", report_dir=out / "quality")
    tokenizer = factory.load_tokenizer(cfg.model)
    metrics: dict[str, float] = {}
    for name, rows, objective, steps in (("helpful", pairs, "bradley_terry", cfg.helpful_steps),
                                         ("harmless", safety, "pointwise", cfg.harmless_steps)):
        started = time.perf_counter()
        trainer = _train(cfg, tokenizer, name, objective, _split(rows, "train"), steps, out)
        test = _split(rows, "test")
        metrics.update(_evaluate_helpful(trainer, cfg, test) if name == "helpful"
                       else _evaluate_harmless(trainer, cfg, test))
        save_model(trainer.engine, tokenizer, out / name)
        metrics[f"{name}_seconds"] = time.perf_counter() - started
    if is_main():
        _merge_steps(out)
    checkpoint.clear(out / "checkpoints")  # both models are saved: nothing left to resume
    return {**metrics, "pairs_train": len(_split(pairs, "train")), "pairs_test": len(_split(pairs, "test")),
            "harmless_train": len(_split(safety, "train")), "harmless_test": len(_split(safety, "test"))}


def _split(rows: list[dict], split: str) -> list[dict]:
    return [r for r in rows if r["split"] == split]


def _train(cfg, tokenizer, name: str, objective: str, rows: list[dict], steps: int, out: Path):
    model = rm.from_base(cfg.model, tokenizer, seed=cfg.seed)
    log_path = out / "steps" / f"{name}.jsonl"  # not *.jsonl at the top: those are datasets
    trainer = rm.RewardTrainer(model, tokenizer, cfg, out, objective=objective, name=name,
                               steps=StepLog(log_path))
    trainer.train(rows, steps)
    return trainer


def _evaluate_helpful(trainer, cfg, test: list[dict]) -> dict[str, float]:
    """Held-out pair accuracy, overall and per kind of rejected summary, and the mean margin."""
    margins = rm.pair_margins(trainer.engine.module, trainer.tokenizer, test,
                              batch_size=cfg.eval_batch, max_length=cfg.max_length)
    metrics = {"helpful_pair_accuracy": rm.pair_accuracy(margins),
               "helpful_margin": sum(margins) / max(1, len(margins))}
    for kind in sorted({r["kind"] for r in test}):
        metrics[f"helpful_pair_accuracy_{kind}"] = rm.pair_accuracy(
            [m for m, r in zip(margins, test) if r["kind"] == kind])
    log.info("helpful: held-out pair accuracy %.3f on %d pairs", metrics["helpful_pair_accuracy"], len(test))
    return metrics


def _evaluate_harmless(trainer, cfg, test: list[dict]) -> dict[str, float]:
    """Held-out pointwise accuracy (and its majority-class baseline), per kind, and the share of
    unsafe requests whose refusal outscores the compliance."""
    scores = rm.score(trainer.engine.module, trainer.tokenizer, [r["prompt"] for r in test],
                      [r["response"] for r in test], batch_size=cfg.eval_batch, max_length=cfg.max_length)
    labels = [r["label"] for r in test]
    share_safe = sum(labels) / max(1, len(labels))
    metrics = {"harmless_accuracy": rm.pointwise_accuracy(scores, labels),
               "harmless_majority_baseline": max(share_safe, 1 - share_safe),
               "harmless_pair_accuracy": rm.grouped_pair_accuracy(test, scores)}
    for kind in sorted({r["kind"] for r in test}):
        picked = [(s, r["label"]) for s, r in zip(scores, test) if r["kind"] == kind]
        metrics[f"harmless_accuracy_{kind}"] = rm.pointwise_accuracy(*zip(*picked))
    log.info("harmless: held-out accuracy %.3f on %d rows", metrics["harmless_accuracy"], len(test))
    return metrics


def _merge_steps(out: Path) -> None:
    """``steps.jsonl``: one row per step with both models' metrics (their keys are prefixed)."""
    merged: dict[int, dict] = {}
    for name in MODELS:
        for row in StepLog(out / "steps" / f"{name}.jsonl").read():
            merged.setdefault(row["step"], {"step": row["step"]}).update(row)
    write_jsonl([merged[s] for s in sorted(merged)], out / "steps.jsonl")


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, RewardModelConfig, run, argv)

"""What the training stages share: GRPO (r1_zero, reasoning_rl, all_scenario_rl: prompts in,
policy out) and SFT (sft_cold, sft: rows in, model out)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data.loaders import read_jsonl
from data.quality import write_checked_jsonl
from infra.stage import item_path, stage_dir
from infra.steplog import StepLog
from model import checkpoint, factory
from model.grpo import GRPOTrainer
from model.factory import ModelArgs
from model.sft import SFTArgs, SFTTrainer
from model.trainer import save_model

log = logging.getLogger(__name__)


class ItemModel:
    """Mixin of a foreach stage's config whose ``model`` path names its item (``{item}``)."""

    def for_item(self):
        """This config with ``{item}`` in ``model`` replaced by the item (what ``run`` loads,
        and what ``--help`` shows); a template without an item is a ValueError."""
        return dataclasses.replace(self, model=item_path(self.model, self.item))


def grpo_stage(name: str, cfg, extra_columns: dict | None = None, *, rows: list[dict] | None = None,
               suite: str = "prompts", out: Path | None = None) -> dict:
    """Load and check the prompt set, train ``cfg.model`` with GRPO, save the policy.

    ``cfg`` is a GRPOArgs + TrainingData + ModelArgs subclass with ``model`` and, unless
    ``rows`` (a prompt set built by the stage) is given, ``dataset``, ``dataset_size``, ``mix``,
    whose rows overlapping an evaluation set are removed first; ``extra_columns`` are added
    to every prompt row (e.g. the target ``language``). The rows are checked against the GE
    suite ``suite`` and written to ``prompts.jsonl`` in ``out`` (default ``artifacts/<name>``;
    a foreach stage passes its item's folder).
    Returns the last step's metrics plus the mean reward of the first and last tenth of steps,
    ``decontaminated`` (prompts removed; when the stage loaded them) and ``model_revision``.
    """
    out = out or stage_dir(name)
    removed = {}
    if rows is None:
        rows, removed["decontaminated"] = cfg.training_rows(cfg.dataset_size, cfg.seed, name)
    rows = [{**row, **(extra_columns or {})} for row in rows]
    write_checked_jsonl(rows, out / "prompts.jsonl", suite, report_dir=out / "quality")
    tokenizer, model, commit = factory.load_pinned(cfg.model, cfg.revision)
    trainer = GRPOTrainer(model, tokenizer, rows, cfg, out)
    last = trainer.train()
    save_model(trainer.engine, tokenizer, out / "model")
    checkpoint.clear(out / "checkpoints")  # the model is saved: nothing left to resume
    history = trainer.steps.read()
    window = max(1, len(history) // 10)
    first = sum(r["reward"] for r in history[:window]) / window
    final = sum(r["reward"] for r in history[-window:]) / window
    return {**last, "reward_first": first, "reward_last": final, "steps_done": len(history), **removed,
            "model_revision": commit}


@dataclass
class SFTStageArgs(SFTArgs, ModelArgs):
    """The knobs of the SFT stages after the cold start (sft_cold, sft, distill): their rows are
    in the readable format, so their prompts ask for it."""

    OUTPUT: ClassVar[str] = "readable"

    def __post_init__(self):
        super().__post_init__()
        self.check_model_args()


def read_sft_rows(path) -> list[dict]:
    """The rows of an SFT dataset, each with a non-blank ``prompt`` and ``completion`` (all SFT
    reads; a general row of the SFT mix has no gold answer, so the schema's answer rule of
    ``read_rows_jsonl`` does not apply). Raises DatasetError naming the file, line and field."""
    from data.schema import DatasetError

    rows = []
    for line, row in read_jsonl(path):
        for field in ("prompt", "completion"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DatasetError("missing or blank", path=path, line=line, field=field)
        rows.append(row)
    return rows


def sft_stage(name: str, cfg, *, out: Path | None = None) -> dict:
    """Fine-tune ``cfg.model`` on the rows of ``cfg.data`` (prompt + completion), save it to
    ``out/model`` (``out`` defaults to ``artifacts/<name>``).

    ``cfg`` is an SFTArgs + ModelArgs subclass with ``model`` and ``data``. Returns the last
    step's metrics, the row count, the optimizer steps done and ``model_revision``.
    """
    out = out or stage_dir(name)
    rows = read_sft_rows(cfg.data)
    if not rows:
        raise ValueError(f"{cfg.data}: no rows to train on")
    tokenizer, model, commit = factory.load_pinned(cfg.model, cfg.revision)
    trainer = SFTTrainer(model, tokenizer, cfg, out, steps=StepLog(out / "steps.jsonl"))
    metrics = trainer.train(rows)
    save_model(trainer.engine, tokenizer, out / "model")
    checkpoint.clear(out / "checkpoints")  # the model is saved: nothing left to resume
    return {**metrics, "rows": len(rows), "steps_done": trainer.total_steps(len(rows)), "model_revision": commit}

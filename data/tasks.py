"""One name space for every prompt set a stage can train or evaluate on, and its splits.

- ``arithmetic`` / ``countdown``: the seeded synthetic tasks, in the split the stage names
  (``train``, ``validation``, ``test`` or ``hard``); a split suffix in the name
  (``arithmetic_test``, ``countdown_validation``) names the split itself and wins over the
  stage's;
- ``synthetic``: both families of that split, mixed;
- anything else goes to :func:`data.loaders.load_dataset` (benchmark names: ``gsm8k`` has a
  train and a test split, ``math500``/``aime24``/``humaneval`` only test; local JSONL/Parquet
  files, which are one split each; hub ids, read in the named split).

Contract 7, "train on train, tune on validation, report on test", lives here:
:func:`check_training_set` refuses an evaluation set (a test-only benchmark, a
``validation``/``test``/``hard`` split) for a training or sampling
stage, and :func:`decontaminate_prompts` removes the prompts of a training or sampling stage that
overlap the evaluation sets (word n-grams, :func:`data.filters.decontaminate`). Stages get
both through :class:`TrainingData`, whose ``eval_sets`` and ``benchmark_seed`` default to
``evaluate.benchmarks`` and ``evaluate.benchmark_seed`` of params.yaml
(:func:`infra.config.knob`'s ``inherit``), so a stage is decontaminated against the very
problems evaluate scores (:func:`benchmark_rows`), whatever the run's ``seed``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from data.loaders import EVAL_ONLY_BENCHMARKS, benchmark_of, load_dataset
from data.synthetic import FAMILIES, SPLITS, make_rows
from infra.config import knob

log = logging.getLogger(__name__)

_SYNTHETIC = re.compile(rf"^({'|'.join(FAMILIES)}|synthetic)(?:_({'|'.join(SPLITS)}))?$")
EVAL_SPLITS = ("validation", "test", "hard")  # splits only evaluation (and tuning) reads
# What evaluate scores when params.yaml names nothing: the held-out synthetic splits.
DEFAULT_BENCHMARKS = ["arithmetic_test", "arithmetic_hard", "countdown_test", "countdown_hard"]
# Synthetic benchmark problems are drawn with benchmark_seed + EVAL_SEED (benchmark_rows): an
# offset that keeps them apart from training streams of the same seed. benchmark_seed 0 gives the
# problems every run was scored on before the run seed stopped moving them (issue 12).
EVAL_SEED = 12345


def resolve_split(spec: str, split: str) -> tuple[str, str]:
    """``(spec without a synthetic split suffix, the split read)``: a suffix names the split."""
    match = _SYNTHETIC.match(spec)
    if match and match.group(2):
        return match.group(1), match.group(2)
    return spec, split


def load_task(spec: str, *, split: str, limit: int, seed: int = 0, mix: dict[str, float] | None = None,
              revision: str | None = None, warn_short: bool = True) -> list[dict]:
    """Rows in the project's schema for ``spec`` in ``split`` (see module doc), at most ``limit``.

    ``mix`` weighs the families of ``synthetic``; ``revision`` pins a hub dataset; a synthetic
    family with fewer distinct problems than ``limit`` logs a warning unless ``warn_short`` is off
    (``limit`` is then a cap, not a request).
    Raises ValueError for a split the dataset does not have (e.g. ``math500`` train).
    """
    spec, split = resolve_split(spec, split)
    if spec in FAMILIES or spec == "synthetic":
        if split not in SPLITS:
            raise ValueError(f"{spec}: unknown split {split!r}; synthetic tasks have {', '.join(SPLITS)}")
        shares = {spec: 1.0} if spec in FAMILIES else (mix or {family: 1.0 for family in FAMILIES})
        total = sum(shares.values())
        rows = [row for family, share in shares.items()
                for row in make_rows(family, split, round(limit * share / total), seed)]
        if warn_short and len(rows) < limit and spec in FAMILIES:
            log.warning("%s_%s: only %d distinct problems exist (asked for %d)", spec, split, len(rows), limit)
        return rows
    return load_dataset(spec, split=split, limit=limit, revision=revision or None)


def check_training_set(spec: str, split: str) -> None:
    """Raise ValueError, saying why and what to use, if a training or sampling stage would read
    an evaluation set: a test-only benchmark or a ``test``/``hard`` split."""
    base, read = resolve_split(spec, split)
    bench, file_split = benchmark_of(base) or (None, None)
    named = bench if bench == base else f"{base} ({bench})"
    if bench in EVAL_ONLY_BENCHMARKS:
        raise ValueError(f"{named} has only a test split: it is an evaluation set; train on gsm8k "
                         "(split train) or a file")
    if file_split == "test":
        raise ValueError(f"{named}: this file is the test split, which evaluation scores; train on "
                         f"{bench} with split train")
    if read in EVAL_SPLITS:
        family = base if base in FAMILIES or base == "synthetic" else None
        instead = f"dataset={family} with split=train" if family else "split=train"
        readers = "evaluation and tuning score" if read == "validation" else "evaluation scores"
        raise ValueError(f"dataset {spec!r} with split {split!r} reads the {read} split, which {readers}: "
                         f"training and sampling stages never draw from it; use {instead}")


def benchmark_rows(name: str, *, limit: int, split: str = "test", benchmark_seed: int = 0,
                   warn_short: bool = True) -> list[dict]:
    """The rows of the benchmark ``name`` as evaluate scores them: :func:`load_task` in ``split``
    (a ``_hard``/``_test`` suffix wins), at most ``limit``, synthetic problems drawn with seed
    ``benchmark_seed + EVAL_SEED``. They depend on ``benchmark_seed`` only, never on a stage's
    run seed, so runs with different seeds are scored on the same problems (same ids, same
    prompts); each row's problems are a prefix of a longer ``limit``'s."""
    return load_task(name, split=split, limit=limit, seed=benchmark_seed + EVAL_SEED, warn_short=warn_short)


def eval_prompts(eval_sets: list[str], limit: int, benchmark_seed: int = 0) -> list[str]:
    """The prompts of every evaluation set, each read as evaluate reads it
    (:func:`benchmark_rows` in split ``test`` unless the name says ``hard``)."""
    return [row["prompt"] for name in eval_sets
            for row in benchmark_rows(name, limit=limit, benchmark_seed=benchmark_seed, warn_short=False)]


def decontaminate_prompts(rows: list[dict], eval_sets: list[str], *, limit: int, benchmark_seed: int = 0,
                          where: str = "") -> tuple[list[dict], int]:
    """``rows`` without those whose prompt overlaps an evaluation set's (a shared word 8-gram
    or the same text, :func:`data.filters.decontaminate`), and how many were removed (logged).
    The evaluation sets are read with ``limit`` rows each and ``benchmark_seed``
    (:func:`eval_prompts`), as evaluate reads them.

    Raises ValueError when every row is removed: the dataset is an evaluation set.
    """
    from data.filters import decontaminate

    if not eval_sets or not rows:
        return rows, 0
    kept, removed = decontaminate(rows, eval_prompts(eval_sets, limit, benchmark_seed))
    log.info("%sremoved %d of %d prompts that overlap the evaluation sets %s",
             f"{where}: " if where else "", removed, len(rows), eval_sets)
    if not kept:
        raise ValueError(f"{where or 'dataset'}: every prompt overlaps the evaluation sets {eval_sets}; "
                         "train on a training split, not an evaluation set")
    return kept, removed


@dataclass
class TrainingData:
    """The data knobs of every training and sampling stage (a mixin of their configs, which
    define ``dataset`` themselves); call :meth:`check_data` in ``__post_init__``."""

    split: str = knob("train", "Split of `dataset` read: train (the splits evaluation and tuning read, validation, "
                      "test and hard, are refused).")
    dataset_revision: str = knob("", "Hub datasets only: the revision (commit, tag or branch) to pin; empty = default branch.")
    eval_sets: list = knob(DEFAULT_BENCHMARKS, "Evaluation sets whose prompts are removed from this stage's "
                           "(word 8-gram overlap); default: evaluate.benchmarks of params.yaml.",
                           inherit="evaluate.benchmarks")
    eval_limit: int = knob(2000, "Rows read per evaluation set for decontamination (the real benchmarks are smaller: all rows).")
    benchmark_seed: int = knob(0, "Seed of the synthetic evaluation sets' problems, as evaluate draws them; "
                               "default: evaluate.benchmark_seed of params.yaml.", inherit="evaluate.benchmark_seed")

    def check_data(self) -> None:
        """Refuse an evaluation set as this stage's dataset (see :func:`check_training_set`)."""
        check_training_set(self.dataset, self.split)

    def training_rows(self, limit: int, seed: int, where: str) -> tuple[list[dict], int]:
        """The stage's decontaminated rows and how many were removed (``where``: the stage)."""
        rows = load_task(self.dataset, split=self.split, limit=limit, seed=seed, mix=self.mix,
                         revision=self.dataset_revision)
        return self.decontaminated(rows, where)

    def decontaminated(self, rows: list[dict], where: str) -> tuple[list[dict], int]:
        """``rows`` without those overlapping ``eval_sets`` (:func:`decontaminate_prompts`, with
        this stage's ``eval_limit`` and ``benchmark_seed``) and how many were removed."""
        return decontaminate_prompts(rows, self.eval_sets, limit=self.eval_limit,
                                     benchmark_seed=self.benchmark_seed, where=where)

    def eval_prompts(self) -> list[str]:
        """The prompts this stage is decontaminated against (:func:`eval_prompts`)."""
        return eval_prompts(self.eval_sets, self.eval_limit, self.benchmark_seed)

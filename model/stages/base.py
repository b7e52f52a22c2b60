"""Stage ``base``: the base model every other stage starts from.

Embedded default: write the synthetic pretraining corpus (noisy worked solutions,
rare "wait" re-checks, some untagged answers: see data/synthetic.py), train a
byte-level BPE tokenizer on it, build a tiny Llama-family decoder from a config
and pretrain it with the SFT trainer (loss on completions only). This stands in
for DeepSeek-V3-Base: a model that can sometimes solve the tasks and rarely
reflects, so that pure RL has behaviour to select for.

A fifth of the corpus is written in Russian and a share ``code_switch`` of its solutions
switches language midway, so that the base mixes scripts now and then, as DeepSeek-V3-Base
does: R1-Zero can drift into language mixing, and reasoning_rl's language reward has
something to correct.

Real runs name a Hugging Face causal LM in ``base.model`` (local path or hub id);
the stage then trains nothing and records the reference for downstream stages.
:func:`pretrain` is the whole recipe for any output folder; ``student`` calls it with
smaller size knobs.

One CPU rank:  r1flow stage base
N GPUs:        deepspeed --num_gpus N --no_local_rank --module flows.cli stage base
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from data.loaders import write_jsonl
from data.quality import scripts_of, write_checked_jsonl
from data.synthetic import FAMILIES, LEXICONS, Noise, base_corpus
from data.formatting import r1_zero_prompt
from infra.config import knob
from infra.io import staged_dir
from infra.stage import stage_dir, stage_main
from infra.steplog import StepLog
from model import checkpoint, factory
from model.factory import ModelArgs
from model.sft import SFTArgs, SFTTrainer
from model.trainer import is_main, save_model

log = logging.getLogger(__name__)
NAME = "base"


@dataclass
class BaseConfig(SFTArgs, ModelArgs):
    OUTPUT: ClassVar[str] = "tags"  # the corpus is in R1-Zero's format

    model: str = knob("", "A Hugging Face causal LM (path or hub id) to use as is; empty = the tiny default.")
    corpus_size: int = knob(40000, "Worked solutions in the synthetic pretraining corpus.")
    mix: dict = knob({"arithmetic": 0.75, "countdown": 0.25}, "Share of each task family in the corpus.")
    languages: dict = knob({"en": 0.8, "ru": 0.2}, "Share of corpus examples written in each language (en, ru).")
    code_switch: float = knob(0.05, "Chance that a corpus solution switches to another of its languages midway.")
    slip: float = knob(0.05, "Chance that a step of the corpus's solver is off by one.")
    forget_carry: float = knob(0.4, "Chance that the solver drops a carry coming into a column.")
    fix: float = knob(0.3, "Chance that a wrong step is followed by a 'wait , ...' re-check that repairs it.")
    unformatted: float = knob(0.25, "Share of corpus answers written without <answer> tags.")
    direct: float = knob(0.0, "Share of corpus solutions that give the answer at once, no steps (a hasty solver): "
                         "right in the corpus, unreliable for a tiny model computing it in one pass.")
    check: float = knob(0.0, "Chance that the solver re-checks any step, right or wrong ('wait , <step> yes'); a "
                        "re-check is always right, so re-checking pays (0: re-checks only follow slips).")
    vocab_size: int = knob(512, "BPE vocabulary size of the tiny tokenizer.")
    family: str = knob("llama", "Architecture of the tiny model: llama or qwen2.")
    architecture: str = knob("dense", "dense, or moe: every MLP a Mixture of Experts as in DeepSeek-V3 (Mixtral for "
                             "llama, Qwen2-MoE for qwen2), the router's load-balancing loss in training.")
    num_experts: int = knob(4, "moe: experts per layer, each of intermediate_size.")
    num_experts_per_tok: int = knob(2, "moe: experts each token is routed to (top-k).")
    router_aux_loss_coef: float = knob(0.01, "moe: weight of the load-balancing loss (transformers' name; "
                                       "Mixtral's 0.02, Qwen2-MoE's 0.001).")
    hidden_size: int = knob(128, "Width of the tiny model.")
    num_layers: int = knob(4, "Decoder layers of the tiny model.")
    num_heads: int = knob(4, "Attention heads.")
    num_kv_heads: int = knob(2, "Key/value heads (grouped-query attention).")
    intermediate_size: int = knob(384, "MLP width.")

    def __post_init__(self):
        super().__post_init__()
        self.check_model_args()
        unknown_languages = set(self.languages) - set(LEXICONS)
        if unknown_languages:
            raise ValueError(f"languages: unknown {sorted(unknown_languages)}; choose from {sorted(LEXICONS)}")
        if self.architecture not in factory.ARCHITECTURES:
            raise ValueError(f"architecture must be one of {factory.ARCHITECTURES}, got {self.architecture!r}")
        unknown = set(self.mix) - set(FAMILIES)
        if unknown:
            raise ValueError(f"mix: unknown task families {sorted(unknown)}; choose from {FAMILIES}")
        for key in ("slip", "forget_carry", "fix", "unformatted", "code_switch", "check", "direct"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be a probability in [0, 1], got {getattr(self, key)}")


def run(cfg: BaseConfig) -> dict:
    """Build (or reference) the base model; returns pretraining metrics."""
    return pretrain(cfg, stage_dir(NAME))


def pretrain(cfg: BaseConfig, out: Path) -> dict:
    """Pretrain a tiny model of ``cfg``'s size into ``out`` (or reference ``cfg.model``).

    Writes ``out/corpus.jsonl`` (checked by the ``corpus`` suite, report in ``out/quality``),
    trains a tokenizer on it, builds and SFT-pretrains the model (checkpoints and steps log in
    ``out``), saves it atomically to ``out/model`` and clears the checkpoints. With
    ``cfg.model`` set, only the reference (pinned to the commit ``cfg.revision`` resolves to, so
    every later stage loads that commit), an empty corpus and an empty steps log are written.

    Returns:
        The trainer's metrics plus ``trained``, ``parameters`` and the corpus shares.
    """
    out = Path(out)
    if cfg.model:
        commit = factory.pinned_revision(cfg.model, cfg.revision)
        if is_main():  # no engine, so no process group to meet at: the other ranks just return
            with staged_dir(out / "model") as tmp:
                factory.write_reference(tmp, cfg.model, cfg.revision if commit in ("local", "unresolved") else commit)
            write_jsonl([], out / "corpus.jsonl")  # declared outputs exist even when nothing is trained
            StepLog(out / "steps.jsonl").resume(0)
        log.info("%s: using %s as the model (nothing trained)", out, cfg.model)
        return {"trained": 0, "model_revision": commit}
    noise = Noise(slip=cfg.slip, forget_carry=cfg.forget_carry, fix=cfg.fix, unformatted=cfg.unformatted,
                  code_switch=cfg.code_switch, check=cfg.check, direct=cfg.direct)
    rows = base_corpus(cfg.corpus_size, mix=cfg.mix, noise=noise, seed=cfg.seed, languages=cfg.languages)
    write_checked_jsonl(rows, out / "corpus.jsonl", "corpus", report_dir=out / "quality")
    tokenizer = factory.train_tokenizer(
        (r1_zero_prompt(r["prompt"]) + " " + r["completion"] for r in rows), vocab_size=cfg.vocab_size)
    model = factory.build_tiny_model(
        tokenizer, family=cfg.family, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, intermediate_size=cfg.intermediate_size,
        architecture=cfg.architecture, num_experts=cfg.num_experts, num_experts_per_tok=cfg.num_experts_per_tok,
        router_aux_loss_coef=cfg.router_aux_loss_coef, seed=cfg.seed)
    trainer = SFTTrainer(model, tokenizer, cfg, out, steps=StepLog(out / "steps.jsonl"))
    metrics = trainer.train(rows)
    save_model(trainer.engine, tokenizer, out / "model")
    checkpoint.clear(out / "checkpoints")  # the model is saved: nothing left to resume
    return {
        **metrics, "trained": 1, "parameters": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()),  # ds_numel: ZeRO-3
        "corpus_rows": len(rows),
        "corpus_reflection_share": _share(rows, lambda c: any(f"{w['wait']} ," in c for w in LEXICONS.values())),
        "corpus_unformatted_share": _share(rows, lambda c: "<answer>" not in c),
        "corpus_code_switch_share": _share(rows, lambda c: len(scripts_of(c)) > 1),
    }


def _share(rows: list[dict], test) -> float:
    return sum(bool(test(r["completion"])) for r in rows) / max(1, len(rows))


def main(argv: list[str] | None = None) -> dict:
    return stage_main(NAME, BaseConfig, run, argv)

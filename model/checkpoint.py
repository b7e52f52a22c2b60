"""DeepSpeed checkpoints for resumable training stages.

A checkpoint is DeepSpeed's own folder layout (``<dir>/<tag>/`` plus the ``latest``
file), so ``engine.load_checkpoint`` restores weights, optimizer, scheduler and
the trainer's ``client_state``. Only the newest ``keep`` tags are kept.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from infra import launch

log = logging.getLogger(__name__)


def _tag(step: int) -> str:
    return f"step-{step:06d}"


def latest_tag(ckpt_dir: str | Path) -> str | None:
    """The tag DeepSpeed marked as latest, or None when there is no checkpoint."""
    latest = Path(ckpt_dir) / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def save(engine, ckpt_dir: str | Path, step: int, fingerprint: str,
         extra: dict[str, dict] | None = None, keep: int = 2) -> Path:
    """Save engine state plus ``extra`` state dicts (e.g. the reference model) at ``step``.

    Every rank calls (DeepSpeed writes each rank's optimizer shard); rank 0 writes the extras
    (other ranks may pass None for a state only rank 0 holds) and prunes old tags.
    """
    ckpt_dir = Path(ckpt_dir)
    tag = _tag(step)
    # Extra files go in before DeepSpeed writes `latest`, so `latest` never names a partial tag.
    if launch.rank() == 0:
        (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
        (ckpt_dir / tag / "fingerprint").write_text(fingerprint)
        for name, state in (extra or {}).items():
            if state is not None:
                torch.save(state, ckpt_dir / tag / f"{name}.pt")
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    from model.trainer import main_rank_writes  # here: model.trainer imports this module

    with main_rank_writes() as writer:  # every rank's shard of the new tag is written first
        if writer:
            tags = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())
            for old in tags[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s saved", ckpt_dir / tag)
    return ckpt_dir / tag


def load(engine, ckpt_dir: str | Path, fingerprint: str,
         extra_names: tuple[str, ...] = ()) -> tuple[int, dict, dict]:
    """Restore the latest checkpoint written under the same ``fingerprint`` (the hash of the
    stage's config); returns (step, client_state, extra state dicts). Step 0 and empty dicts
    when there is none; a checkpoint of another config is discarded, never resumed."""
    tag = latest_tag(ckpt_dir)
    if tag is None:
        return 0, {}, {}
    state_file = Path(ckpt_dir) / tag / "fingerprint"
    if not state_file.is_file() or state_file.read_text() != fingerprint:
        log.warning("discarding checkpoints in %s: written for another config", ckpt_dir)
        clear(ckpt_dir)
        return 0, {}, {}
    _, client_state = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    extra = {name: torch.load(Path(ckpt_dir) / tag / f"{name}.pt", map_location="cpu")
             for name in extra_names if (Path(ckpt_dir) / tag / f"{name}.pt").exists()}
    step = int(client_state["step"])
    log.info("resumed from checkpoint %s (step %d)", Path(ckpt_dir) / tag, step)
    return step, client_state, extra


def clear(ckpt_dir: str | Path) -> None:
    """Remove a stage's checkpoints (once its final output is saved, or when stale); every rank
    calls, rank 0 removes, and no rank returns before the folder is gone."""
    from model.trainer import main_rank_writes

    with main_rank_writes() as writer:
        if writer:
            shutil.rmtree(ckpt_dir, ignore_errors=True)


def fingerprint(config: Any) -> str:
    """Hash of a config dataclass: checkpoints only resume under the same config."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode()).hexdigest()

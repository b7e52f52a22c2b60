"""DeepSpeed checkpoints for resumable training stages, verified before they are loaded.

A checkpoint is DeepSpeed's own folder layout (``<dir>/<tag>/`` plus the ``latest``
file), so ``engine.load_checkpoint`` restores weights, optimizer, scheduler and
the trainer's ``client_state``. Only the newest ``keep`` tags are kept.

DeepSpeed unpickles its files with ``torch.load(weights_only=False)``
(deepspeed/runtime/checkpoint_engine/torch_checkpoint_engine.py), so a file planted in a
checkpoint folder would run code on resume. Each tag therefore gets a manifest,
:data:`MANIFEST` (the SHA-256 and size of every file in it), written by rank 0 once every
rank's files are complete, and only then ``latest``. :func:`load` resumes the newest tag
whose files match its manifest exactly (none missing, changed or added); a tag that does not
(a crash before its manifest, a truncated or planted file) is skipped with a warning and
never reaches DeepSpeed's loader. Hashing reads every file once at save and at load (about
1 GB/s per core).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from infra import launch

log = logging.getLogger(__name__)


MANIFEST = "manifest.json"


def _tag(step: int) -> str:
    return f"step-{step:06d}"


def _files(tag_dir: Path) -> list[Path]:
    return sorted(p for p in tag_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(tag_dir: Path) -> None:
    """Record the SHA-256 and size of every file under ``tag_dir`` in :data:`MANIFEST`
    (written to a temporary name, then renamed: a crash leaves no partial manifest)."""
    entries = {p.relative_to(tag_dir).as_posix(): {"sha256": _digest(p), "bytes": p.stat().st_size}
               for p in _files(tag_dir)}
    _atomic_write(tag_dir / MANIFEST, json.dumps(entries, indent=1, sort_keys=True))


def verify(tag_dir: Path) -> str | None:
    """None when the files under ``tag_dir`` are exactly those of its manifest, unchanged;
    else why not (no manifest, a file missing, added, of another size or hash)."""
    try:
        entries = json.loads((tag_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        return f"no readable manifest ({type(error).__name__})"
    found = {p.relative_to(tag_dir).as_posix(): p for p in _files(tag_dir)}
    if not isinstance(entries, dict) or set(found) != set(entries):
        return f"files {sorted(set(found) ^ set(entries if isinstance(entries, dict) else {}))} not as listed"
    for name, path in found.items():
        entry = entries[name]
        if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes") or _digest(path) != entry.get("sha256"):
            return f"{name} changed since it was saved"
    return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def latest_tag(ckpt_dir: str | Path) -> str | None:
    """The tag DeepSpeed marked as latest, or None when there is no checkpoint."""
    latest = Path(ckpt_dir) / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def save(engine, ckpt_dir: str | Path, step: int, fingerprint: str,
         extra: dict[str, dict] | None = None, keep: int = 2) -> Path:
    """Save engine state plus ``extra`` state dicts (e.g. the reference model) at ``step``.

    Every rank calls (DeepSpeed writes each rank's optimizer shard); rank 0 writes the extras
    (other ranks may pass None for a state only rank 0 holds), then the manifest, then
    ``latest``, and prunes old tags.
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
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step}, save_latest=False)
    from model.trainer import main_rank_writes  # here: model.trainer imports this module

    with main_rank_writes() as writer:  # every rank's shard of the new tag is written first
        if writer:
            write_manifest(ckpt_dir / tag)
            _atomic_write(ckpt_dir / "latest", tag)  # DeepSpeed's pointer, after the manifest
            tags = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())
            for old in tags[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s saved", ckpt_dir / tag)
    return ckpt_dir / tag


def load(engine, ckpt_dir: str | Path, fingerprint: str,
         extra_names: tuple[str, ...] = ()) -> tuple[int, dict, dict]:
    """Restore the newest verified checkpoint (:func:`verify`) written under the same
    ``fingerprint`` (the hash of the stage's config); returns (step, client_state, extra state
    dicts). Step 0 and empty dicts when there is none; a checkpoint of another config is
    discarded, never resumed. Every rank verifies before any rank loads."""
    tag = _newest_verified(Path(ckpt_dir))
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


def _newest_verified(ckpt_dir: Path) -> str | None:
    """The newest tag, from ``latest`` down, whose files match its manifest; each tag that
    does not is logged and skipped."""
    latest = latest_tag(ckpt_dir)
    if latest is None:
        return None
    tags = sorted((p.name for p in ckpt_dir.glob("step-*") if p.is_dir() and p.name <= latest), reverse=True)
    for tag in tags:
        problem = verify(ckpt_dir / tag)
        if problem is None:
            return tag
        log.warning("not resuming from checkpoint %s: %s", ckpt_dir / tag, problem)
    return None


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

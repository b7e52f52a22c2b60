"""Checkpoints are verified before DeepSpeed unpickles them (model/checkpoint.py).

One real DeepSpeed engine (a CPU rank, in a subprocess so that this process never joins a
process group) saves two tags; copies of that folder are then damaged the ways a crash or an
attacker would, and resumed. A damaged tag is never loaded: resume falls back to the newest
intact tag, and a planted pickle never runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import DIST_VARS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from model import checkpoint
    from model.engine import make_engine

    torch.manual_seed(0)
    engine = make_engine(torch.nn.Linear(4, 4), lr=1e-3, micro_batch=1)
    if sys.argv[1] == "save":
        for step in (1, 2):
            checkpoint.save(engine, Path(sys.argv[2]), step, "config-hash")
    else:
        print(json.dumps([checkpoint.load(engine, Path(d), "config-hash")[0] for d in sys.argv[2:]]))
""")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class _Planted:
    """Unpickling this (as ``torch.load(weights_only=False)`` does) creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.fault(fault="a planted, truncated or added file in a checkpoint; a crash before its manifest",
                   injected="files of a saved DeepSpeed checkpoint replaced by a pickle that runs code, "
                            "truncated, added, or the manifest removed",
                   survives="resume from the newest intact tag (step 1, or 0 when none is); the planted pickle never runs")
def test_a_damaged_checkpoint_is_never_loaded(tmp_path):
    saved = tmp_path / "saved"
    _run("save", str(saved))
    assert (saved / "latest").read_text() == "step-000002"
    assert {"latest", "step-000001", "step-000002"} <= {p.name for p in saved.iterdir()}
    manifest = json.loads((saved / "step-000002" / "manifest.json").read_text())
    assert "fingerprint" in manifest and any(name.endswith("model_states.pt") for name in manifest)

    marker = tmp_path / "planted-code-ran"
    cases = {}

    def case(name: str) -> Path:
        cases[name] = tmp_path / name
        shutil.copytree(saved, cases[name])
        return cases[name] / "step-000002"

    case("intact")
    states = next(case("planted pickle").glob("*model_states.pt"))
    torch.save({"module": _Planted(marker)}, states)
    with open(next(case("truncated").glob("*model_states.pt")), "r+b") as f:
        f.truncate(100)
    (case("added file") / "extra.pt").write_bytes(b"\x80\x04N.")
    (case("crash before the manifest") / "manifest.json").unlink()
    tag = case("both damaged")
    (tag / "fingerprint").write_text("config-hash ")
    (tag.parent / "step-000001" / "manifest.json").write_text("{")

    proc = _run("load", *map(str, cases.values()))
    steps = dict(zip(cases, json.loads(proc.stdout.strip().splitlines()[-1])))
    assert steps == {"intact": 2, "planted pickle": 1, "truncated": 1, "added file": 1,
                     "crash before the manifest": 1, "both damaged": 0}
    assert not marker.exists()
    assert "not resuming from checkpoint" in proc.stderr and "changed since it was saved" in proc.stderr

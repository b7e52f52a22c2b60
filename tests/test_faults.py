"""Faults injected for real, and what survives them (issue 11's fault suite).

Each test is marked ``fault``: ``make reliability`` runs them and writes the table of
docs/RELIABILITY.md (fault, how it was injected, what must survive, the outcome). Other fault
tests live beside the code they cover (tests/test_sandbox.py, tests/test_checkpoint.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import DIST_VARS, run_cli
from model.rewards.sandbox import bwrap_path
from test_stages import _project, _steps_of

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    env.pop("PREFECT_API_URL", None)
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def _md5s(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- disk full ----------------------------------------------------------------------------------

DISK_FULL = textwrap.dedent("""
    import hashlib, json, os, sys
    from pathlib import Path
    import torch
    from infra.io import staged_dir
    from model import checkpoint, factory
    from model.engine import make_engine

    out, tiny = Path(sys.argv[1]), sys.argv[2]
    model, tokenizer = factory.load_model(tiny), factory.load_tokenizer(tiny)
    engine = make_engine(torch.nn.Linear(256, 256), lr=1e-3, micro_batch=1)  # about 1 MB saved

    def md5s(folder):
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}

    with staged_dir(out / "model") as tmp:  # version 1 of the model and checkpoint step 1: room
        factory.save_pretrained(model, tokenizer, tmp)
    checkpoint.save(engine, out / "checkpoints", 1, "config")
    before = md5s(out / "model")
    free = os.statvfs(out).f_bavail * os.statvfs(out).f_frsize
    with open(out / "filler", "wb") as f:  # the disk is now full but for 64 KiB
        f.write(b"\\0" * (free - 65536))
    errors = {}
    try:
        with staged_dir(out / "model") as tmp:
            factory.save_pretrained(model, tokenizer, tmp)
    except Exception as error:  # safetensors raises its own error type for ENOSPC
        errors["model"] = str(error)[:200]
    try:
        checkpoint.save(engine, out / "checkpoints", 2, "config")
    except Exception as error:
        errors["checkpoint"] = str(error)[:200]
    os.remove(out / "filler")
    step = checkpoint.load(engine, out / "checkpoints", "config")[0]
    print("RESULT", json.dumps({"errors": errors, "model_intact": md5s(out / "model") == before,
                                "left": sorted(p.name for p in out.iterdir()), "resumed_at": step}))
""")


@pytest.mark.fault(fault="disk full while saving a model and a checkpoint",
                   injected="a 24 MiB tmpfs (bwrap) filled to 64 KiB free after version 1",
                   survives="version 1 of the model (same md5s); resume from checkpoint step 1")
def test_disk_full_keeps_the_previous_model_and_checkpoint(tmp_path, tiny_base):
    out = tmp_path / "artifacts"
    out.mkdir()
    cmd = [bwrap_path(), "--dev-bind", "/", "/", "--size", str(24 << 20), "--tmpfs", str(out), "--die-with-parent",
           sys.executable, "-c", DISK_FULL, str(out), str(tiny_base)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, proc.stderr[-3000:]
    outcome = json.loads(result[0][len("RESULT "):])
    assert "No space left on device" in outcome["errors"]["model"]
    assert outcome["errors"]["checkpoint"]  # torch.save says "unexpected pos", not ENOSPC
    assert outcome["model_intact"] and outcome["resumed_at"] == 1
    assert outcome["left"] == ["checkpoints", "model"]  # no half-written model folder


# --- a training stage killed under Prefect's retry ------------------------------------------------

STAGE_FLOW = textwrap.dedent("""
    import sys
    from prefect import flow
    from flows.pipeline import run_dag

    @flow
    def fault_run():
        return run_dag(sys.argv[1], None, None)

    fault_run()
    print("RESULT ok")
""")


def _kill_when(path: Path, marker: bytes, deadline_s: float = 300) -> threading.Thread:
    """A thread that SIGKILLs every process whose command line (arguments joined by spaces, as a
    warm-started stage's title shows it: infra/warm.py) holds ``marker`` and that runs in
    ``path``'s project once ``path`` exists (the first checkpoint): the stage dies mid-run, as
    under an OOM killer. Processes of other tests never match (their folders differ)."""
    project = str(path.parents[3])

    def watch():
        deadline = time.monotonic() + deadline_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for entry in Path("/proc").iterdir():
            try:
                if (entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                        and os.readlink(entry / "cwd").startswith(project)):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.fault(fault="kill -9 of a training stage mid-run",
                   injected="SIGKILL to the r1_zero process once its first checkpoint exists, inside a Prefect flow",
                   survives="Prefect retries the task; the stage resumes and logs the steps of an uninterrupted run")
def test_killed_training_stage_resumes_under_prefects_retry(tmp_path, tiny_base):
    straight = _project(tmp_path / "straight", r1_zero={"model": str(tiny_base)})
    assert run_cli(["stage", "r1_zero"], straight).returncode == 0

    killed = _project(tmp_path / "killed", r1_zero={"model": str(tiny_base)})
    (killed / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"r1_zero": {
        "cmd": f"{sys.executable} -m flows.cli stage r1_zero", "params": ["r1_zero"],
        "outs": [{"artifacts/r1_zero": {"persist": True}}]}}}))
    subprocess.run(["git", "init", "-q"], cwd=killed, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=killed, check=True)
    latest = killed / "artifacts" / "r1_zero" / "checkpoints" / "latest"
    killer = _kill_when(latest, b"flows.cli stage r1_zero")
    flow = subprocess.run([sys.executable, "-c", STAGE_FLOW, str(killed)], cwd=ROOT, timeout=600,
                          env=_env(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"),
                                   MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db", R1FLOW_PARALLEL="1"),
                          capture_output=True, text=True)
    killer.join(timeout=1)
    assert "RESULT ok" in flow.stdout, flow.stdout[-3000:] + flow.stderr[-3000:]
    log = flow.stdout + flow.stderr
    assert "Retry" in log or "retry" in log, "the stage was never killed and retried"
    assert "resumed from checkpoint" in log
    steps = _steps_of(killed, "r1_zero")
    assert [s["step"] for s in steps] == [s["step"] for s in _steps_of(straight, "r1_zero")]  # none lost, none twice
    for a, b in zip(steps, _steps_of(straight, "r1_zero")):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)  # the same trajectory
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


# --- the flow process killed, then run again ------------------------------------------------------


@pytest.mark.fault(fault="kill -9 of the flow process",
                   injected="SIGKILL to the Prefect flow running a 4-stage DVC DAG once its first stage is done",
                   survives="the finished stage's outputs (same md5s); the same flow run again completes every stage")
def test_killed_flow_run_again_keeps_finished_stages_and_completes(tmp_path):
    from test_pipeline import DVC_YAML, FLOW, _project as toy_project

    project = toy_project(tmp_path, DVC_YAML)
    script = tmp_path / "flow.py"
    script.write_text(FLOW)
    env = _env(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"), R1FLOW_PARALLEL="1",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    # Its own process group: the flow alone is killed, and what it leaves (its temporary API
    # server, a running stage) is cleaned up with the group at the end.
    flow = subprocess.Popen([sys.executable, str(script), str(project)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = project / "out" / "a.json"
        deadline = time.monotonic() + 300
        while not first.exists() and time.monotonic() < deadline and flow.poll() is None:
            time.sleep(0.05)
        flow.kill()
        flow.wait()
        assert first.exists() and not (project / "out" / "c.json").exists(), "the flow was not killed mid-DAG"
        before = {name: md5 for name, md5 in _md5s(project / "out").items() if name.endswith(".json")}

        again = subprocess.run([sys.executable, str(script), str(project)], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    finally:
        try:
            os.killpg(flow.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "RESULT ok" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    after = _md5s(project / "out")
    assert sorted(name for name in after if name.endswith(".json")) == ["a.json", "b_x.json", "b_y.json", "c.json"]
    assert {name: after[name] for name in before} == before  # finished stages were not redone
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == ["a", "b@x", "b@y", "c"]

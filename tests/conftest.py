"""Shared fixtures: a tiny tokenizer + model trained in-process, saved like a hub model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Prefect's temporary API server waits 20 s to start by default; a fresh PREFECT_HOME migrates
# its database first, which on a busy 2-core machine can take longer (flows/cli.py sets the same).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# One thread per process: tests start several processes at once (servers, ranks, stages) on
# a 2-core machine, where OpenMP threads that spin-wait for a busy core cost 1000x.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
# The real benchmark files, as an absolute path every subprocess and copied project inherits
# (`make test` sets it too; this covers a bare `pytest`).
if (ROOT.parent / "shared" / "data").is_dir():
    os.environ.setdefault("R1FLOW_SHARED_DATA", str((ROOT.parent / "shared" / "data").resolve()))


def shared_data(relative: str = "") -> Path:
    """A path under the real benchmark folder (``$R1FLOW_SHARED_DATA``). Under ``CI=true`` a
    missing file fails the test; elsewhere the test is skipped, naming the missing path."""
    from data.loaders import SHARED_DATA_ENV

    base = os.environ.get(SHARED_DATA_ENV)
    path = Path(base or ROOT.parent / "shared" / "data") / relative
    if not path.exists():
        unavailable(f"real benchmark file {path} is missing (set ${SHARED_DATA_ENV} or put shared/ beside the checkout)")
    return path


def unavailable(message: str) -> None:
    """A test cannot run here for want of something outside the checkout (``message`` says
    what, and how to get it): under ``CI=true`` it fails, elsewhere it is skipped."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide Llama with the project's tokenizer, saved with save_pretrained."""
    from data.formatting import r1_zero_prompt
    from data.synthetic import Noise, base_corpus
    from model import factory

    rows = base_corpus(400, mix={"arithmetic": 0.75, "countdown": 0.25}, noise=Noise(), seed=0)
    tokenizer = factory.train_tokenizer(
        (r1_zero_prompt(r["prompt"]) + " " + r["completion"] for r in rows), vocab_size=300)
    model = factory.build_tiny_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2,
                                     num_kv_heads=1, intermediate_size=64, seed=0)
    return factory.save_pretrained(model, tokenizer, tmp_path_factory.mktemp("tiny") / "model")


def run_cli(args: list[str], cwd: Path, timeout: int = 600, **kwargs):
    """Run `r1flow ...` in a subprocess (as a user would), returning the CompletedProcess."""
    import subprocess

    env = dict(os.environ)
    for key in DIST_VARS:  # set by in-process engines of this pytest run; the child picks its own
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


# --- the fault table (docs/RELIABILITY.md) ------------------------------------------------------

_FAULTS: list[dict] = []


def pytest_addoption(parser):
    parser.addoption("--reliability-table", metavar="PATH", default=None,
                     help="write the table of the `fault` tests that ran (docs/RELIABILITY.md)")


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(fault, injected, survives): a fault injected for real "
                            "(a row of docs/RELIABILITY.md)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker and (report.when == "call" or report.outcome != "passed"):
        _FAULTS.append({**marker.kwargs, "test": item.nodeid, "outcome": report.outcome,
                        "seconds": getattr(report, "duration", 0.0)})


def pytest_sessionfinish(session):
    path = session.config.getoption("--reliability-table")
    if not path or not _FAULTS:
        return
    import datetime
    import platform

    lines = ["# Reliability: faults injected for real, and what survived", "",
             "Written by `make reliability` (pytest -m fault --reliability-table docs/RELIABILITY.md) "
             f"on {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs. Each row is a test; "
             "it passes only when what the last column names survived.", "",
             "| fault | how it was injected | what survives | test | outcome | s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in _FAULTS:
        lines.append(f"| {row.get('fault', '')} | {row.get('injected', '')} | {row.get('survives', '')} | "
                     f"`{row['test']}` | {row['outcome']} | {row['seconds']:.1f} |")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")

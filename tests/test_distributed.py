"""Two CPU ranks under torchrun with ZeRO-2: both ranks end with identical parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import DIST_VARS
from infra.launch import free_port

HERE = Path(__file__).parent


def test_two_rank_zero2_keeps_parameters_identical(tiny_base, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "R1FLOW_DS_CONFIG": "zero2"}
    for key in DIST_VARS:
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           str(HERE / "dist_worker.py"), str(tiny_base), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all(r["zero_stage"] == 2 for r in ranks)
    assert ranks[0]["initial"] == ranks[1]["initial"]
    assert ranks[0]["final"] == ranks[1]["final"]  # ZeRO-2 all-gathers the updated partitions
    assert ranks[0]["final"] != ranks[0]["initial"]  # and they did update
    assert ranks[0]["reward"] != ranks[1]["reward"]  # each rank saw its own prompts

"""Launch settings for DeepSpeed jobs: process-group environment and ZeRO configs.

Hyperparameters (batch sizes, learning rates) live in params.yaml; how a job is
distributed lives here. ``R1FLOW_DS_CONFIG`` names the ZeRO config a training
stage runs under (``zero0``, ``zero2``, ``zero3`` from infra/ds_configs/, or a
path to any DeepSpeed JSON). The same entry point runs

- as one CPU rank (tests, the embedded default): no launcher needed, the
  process-group variables are filled in by :func:`ensure_distributed_env`;
- on N GPUs: ``deepspeed --num_gpus N --module flows.cli stage r1_zero``;
- on several nodes: ``deepspeed --hostfile hostfile --module flows.cli stage r1_zero``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DS_CONFIG_ENV = "R1FLOW_DS_CONFIG"
DEFAULT_DS_CONFIG = "zero2"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_distributed_env() -> None:
    """Fill in the torch.distributed variables for a single rank when no launcher set them.

    Without them DeepSpeed falls back to MPI discovery (``No module named 'mpi4py'``).
    """
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def world_size() -> int:
    """Number of ranks in this job (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """Global rank of this process (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def load_ds_config(name: str | None = None) -> dict[str, Any]:
    """The DeepSpeed JSON named by ``name`` or ``$R1FLOW_DS_CONFIG`` (default zero2)."""
    name = name or os.environ.get(DS_CONFIG_ENV) or DEFAULT_DS_CONFIG
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    packaged = resources.files("infra") / "ds_configs" / f"{name}.json"
    if not packaged.is_file():
        available = sorted(p.name.removesuffix(".json") for p in (resources.files("infra") / "ds_configs").iterdir())
        raise ValueError(f"{DS_CONFIG_ENV}={name!r}: not a JSON file nor one of {available}")
    return json.loads(packaged.read_text())


def ds_config(
    *, micro_batch: int, grad_accum: int, max_grad_norm: float, name: str | None = None
) -> dict[str, Any]:
    """A complete DeepSpeed config: the launch JSON plus the batch shape from params.yaml.

    bf16 is switched on where the accelerator supports it (GPUs); CPU ranks train in fp32.
    """
    import torch

    cfg = load_ds_config(name)
    cfg["train_micro_batch_size_per_gpu"] = micro_batch
    cfg["gradient_accumulation_steps"] = grad_accum
    cfg["train_batch_size"] = micro_batch * grad_accum * world_size()
    cfg["gradient_clipping"] = max_grad_norm
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        cfg.setdefault("bf16", {"enabled": True})
    return cfg


def prepare_cpu_deepspeed() -> None:
    """Skip DeepSpeed's shared-memory allreduce op on CPU ranks.

    It is an optimisation for many-core CPU nodes and costs a 60 s JIT build on
    first use; gloo does the same reduction. DeepSpeed keeps its probed op table
    in one dict, so marking the op incompatible there is honoured by
    ``TorchBackend`` (deepspeed/comm/torch.py, ``build_shm_op``).
    """
    import deepspeed.ops
    import torch

    if torch.cuda.is_available():
        return
    table = deepspeed.ops.__compatible_ops__
    for name in [n for n in table if "shm" in n]:
        table[name] = False


# -- CPU threads shared between stages running side by side -----------------------------

THREADS_ENV = "R1FLOW_THREADS_FILE"
_threads_seen: dict[str, int] = {}


def follow_threads() -> int | None:
    """Use the number of CPU threads the pipeline currently allots this stage.

    The DAG runner (flows/pipeline.py) writes the number into ``$R1FLOW_THREADS_FILE`` and
    rewrites it whenever a stage starts or ends, so a stage left alone takes every core and
    one sharing the machine gives some back. Training loops call this once a step (a stat
    when nothing changed). Returns the count now in use; None (and no change) outside a
    pipeline run or when the file is unreadable.
    """
    path = os.environ.get(THREADS_ENV)
    if not path:
        return None
    try:
        stamp = os.stat(path).st_mtime_ns
        if _threads_seen.get("stamp") == stamp:
            return _threads_seen["threads"]
        threads = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    import torch

    if threads >= 1 and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("CPU threads: %d", threads)
    _threads_seen.update(stamp=stamp, threads=threads)
    return threads

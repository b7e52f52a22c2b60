"""Launch settings for DeepSpeed jobs: which launcher runs a stage, on which devices, under
which ZeRO config, and the process-group environment.

Hyperparameters (batch sizes, learning rates) live in params.yaml; how a job is
distributed lives here, in ``infra/launch.yaml`` (:class:`LaunchSettings`; another file
with ``$R1FLOW_LAUNCH``). dvc.yaml runs every stage as ``python -m flows.cli launch NAME``,
which asks :func:`stage_command` for the command and runs it:

- one CPU process (tests, the embedded default): ``python -m flows.cli stage NAME``; the
  process-group variables are filled in by :func:`ensure_distributed_env`;
- ``cpu_ranks: 2`` on a host without GPUs: ``torchrun --nproc_per_node 2 -m flows.cli stage NAME``
  (gloo), the code path of N GPUs;
- a training stage on a GPU set: ``deepspeed --include localhost:0,1 --no_local_rank --module
  flows.cli stage NAME`` (or ``--hostfile`` for several nodes);
- a sampling stage: one process on the first GPU of its set.

``R1FLOW_DS_CONFIG`` (or ``ds_config`` in the launch file) names the ZeRO config of a
training stage: ``zero0``, ``zero2``, ``zero3`` from infra/ds_configs/, or a path to any
DeepSpeed JSON.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from infra.config import load_yaml

log = logging.getLogger(__name__)

DS_CONFIG_ENV = "R1FLOW_DS_CONFIG"
DEFAULT_DS_CONFIG = "zero2"
LAUNCH_FILE_ENV = "R1FLOW_LAUNCH"


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
    name = name or os.environ.get(DS_CONFIG_ENV) or launch_settings().ds_config
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


# -- which launcher runs a stage, on which devices ------------------------------------------

@dataclass
class LaunchSettings:
    """The launch file (infra/launch.yaml documents each key)."""

    gpus: int | str = "auto"
    hostfile: str = ""
    cpu_ranks: int = 1
    ds_config: str = DEFAULT_DS_CONFIG
    training_stages: list = field(default_factory=list)
    sampling_stages: list = field(default_factory=list)
    source: str = ""  # the file these settings came from (absolute), handed on to every stage

    def __post_init__(self):
        if self.gpus != "auto" and not (type(self.gpus) is int and self.gpus >= 0):
            raise ValueError(f"gpus must be auto or a count >= 0, got {self.gpus!r}")
        if type(self.cpu_ranks) is not int or self.cpu_ranks < 1:
            raise ValueError(f"cpu_ranks must be a count >= 1, got {self.cpu_ranks!r}")
        if self.hostfile and not Path(self.hostfile).is_file():
            raise ValueError(f"hostfile {self.hostfile!r} does not exist")
        for key in ("training_stages", "sampling_stages"):
            if not isinstance(getattr(self, key), list):
                raise ValueError(f"{key} must be a list of stage names, got {getattr(self, key)!r}")
        load_ds_config(self.ds_config)  # an unknown ZeRO config fails here, not after the model loaded

    def kind(self, stage: str) -> str:
        """``train``, ``sample`` or ``cpu`` for a stage name (``NAME`` or ``NAME@ITEM``)."""
        name = stage.partition("@")[0]
        return "train" if name in self.training_stages else "sample" if name in self.sampling_stages else "cpu"


def launch_settings(path: str | Path | None = None) -> LaunchSettings:
    """The settings of ``path``, else ``$R1FLOW_LAUNCH``, else infra/launch.yaml.

    A file of your own only needs the keys it changes: the others (the stage lists among them)
    come from infra/launch.yaml. A relative ``hostfile`` is read from the launch file's folder.

    Raises:
        ValueError: for a missing file, an unknown key or a bad value, naming the file.
    """
    import dataclasses


    packaged = Path(str(resources.files("infra") / "launch.yaml"))
    path = Path(path or os.environ.get(LAUNCH_FILE_ENV) or packaged).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"launch file {path} not found (${LAUNCH_FILE_ENV} or infra/launch.yaml)")
    raw = {**load_yaml(packaged.read_text()), **_mapping(path)}
    known = {f.name for f in dataclasses.fields(LaunchSettings)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    if raw.get("hostfile"):
        raw["hostfile"] = str((path.parent / raw["hostfile"]).resolve())
    try:
        return LaunchSettings(**raw, source=str(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _mapping(path: Path) -> dict:

    raw = load_yaml(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected `key: value` lines, got {type(raw).__name__}")
    return raw


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: ``$CUDA_VISIBLE_DEVICES`` if set, else every GPU torch
    sees (none on a CPU-only host or a CPU build of torch)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if not any(Path("/dev").glob("nvidia[0-9]*")):  # no NVIDIA device: skip importing torch (1.6 s)
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpu_sets(settings: LaunchSettings, gpus: list[str] | None = None) -> list[list[str]]:
    """The visible GPUs cut into the sets that stages run on, one stage per set at a time:
    ``gpus: auto`` gives one set of all, ``N`` gives sets of N (a remainder is left idle),
    ``0`` or no GPU gives none (every stage on the CPU)."""
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus or settings.gpus == 0:
        return []
    size = len(gpus) if settings.gpus == "auto" else settings.gpus
    if size > len(gpus):
        raise ValueError(f"launch file asks for {size} GPUs per stage; only {len(gpus)} visible ({gpus})")
    return [gpus[i:i + size] for i in range(0, len(gpus) - size + 1, size)]


def stage_command(stage: str, argv: list[str], settings: LaunchSettings,
                  gpus: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command that runs ``r1flow stage <stage> <argv>`` under ``settings``, and the
    environment variables to set for it (an empty value means: remove it).

    ``gpus`` are the GPUs this stage may use (default: the visible ones; the pipeline's runner
    makes them one GPU set); a stage takes the first GPU set of them (``gpu_sets``), so
    ``gpus: N`` holds under ``dvc repro`` too. Training stages get the DeepSpeed launcher over
    the set (or the hostfile), or torchrun with ``cpu_ranks`` processes on a CPU host; sampling
    stages one process on the set's first GPU; the rest one plain process. ``gpus: 0`` hides
    every GPU. ``--no_local_rank``: the stage reads LOCAL_RANK from the environment (DeepSpeed's
    launcher sets it), not from an argument.

    Raises:
        ValueError: more GPUs per stage than visible, or GPUs named by UUID/MIG id (the
            DeepSpeed launcher takes indices).
    """
    import sys

    sets = gpu_sets(settings, visible_gpus() if gpus is None else gpus)
    gpus = sets[0] if sets else []
    if any(not g.isdigit() for g in gpus):
        raise ValueError(f"CUDA_VISIBLE_DEVICES names GPUs {gpus}: give their indices (nvidia-smi -L), "
                         "which the DeepSpeed launcher needs")
    entry = ["-m", "flows.cli", "stage", stage, *argv]
    kind = settings.kind(stage)
    hidden = {"CUDA_VISIBLE_DEVICES": "-1"} if settings.gpus == 0 else {}
    if kind == "train" and (settings.hostfile or len(gpus) > 1):
        target = ["--hostfile", settings.hostfile] if settings.hostfile else ["--include", f"localhost:{','.join(gpus)}"]
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", *target, "--master_port", str(free_port()),
               "--no_local_rank", "--module", *entry[1:]]
        return cmd, {"CUDA_VISIBLE_DEVICES": ""}  # the launcher gives each rank its GPU
    if kind == "train" and not gpus and settings.cpu_ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(settings.cpu_ranks),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *entry]
        return cmd, {**hidden, "OMP_NUM_THREADS": str(max(1, _cpu_threads() // settings.cpu_ranks))}
    env = {"CUDA_VISIBLE_DEVICES": gpus[0]} if gpus and kind in ("train", "sample") else hidden
    return [sys.executable, *entry], env


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_threads() -> int:
    threads = os.environ.get("OMP_NUM_THREADS")
    return int(threads) if threads and threads.isdigit() else cpu_cores()

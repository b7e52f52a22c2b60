"""Which stage of a pipeline run starts when, on which GPUs, with how many CPU threads.

Prefect orders the stages: each is submitted with its upstream stages' futures as
``wait_for`` (flows/pipeline.py), so the run graph in the UI is the stage DAG. A stage whose
upstream is done then asks the run's :class:`Scheduler` for a slot (tasks/stages.py): at most
``$R1FLOW_PARALLEL`` stages run at once, those heading the longest chain first, and a GPU
stage waits for a free GPU set (:class:`GpuSets`).

A CPU stage's numbers depend on its thread count (a matmul's sums are split by threads), so
the count is fixed for the whole run when it starts (:func:`threads_per_stage`), handed to
each stage as ``OMP_NUM_THREADS``, recorded in the stage's run.json and MLflow tags
(``r1flow.threads``) and used again by ``r1flow reproduce``. It never changes while a stage
runs: a stage's outputs do not depend on what ran beside it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterator

from infra import launch

log = logging.getLogger(__name__)


class NotStarted(RuntimeError):
    """A stage was not started because another stage of the run failed."""


def heights(graph: dict[str, list[str]]) -> dict[str, int]:
    """Stages on the longest chain from each stage to the end of the DAG, itself included:
    the higher, the sooner a stage should start (``graph`` in topological order)."""
    below = {s: [t for t, ups in graph.items() if s in ups] for s in graph}
    height: dict[str, int] = {}
    for stage in reversed(list(graph)):
        height[stage] = 1 + max((height[t] for t in below[stage]), default=0)
    return height


def width(graph: dict[str, list[str]], wanted: list[str]) -> int:
    """The most ``wanted`` stages at one depth of the DAG (depth: stages on the longest
    chain of wanted stages above it): how many can run side by side, at least."""
    depth: dict[str, int] = {}
    for stage in graph:  # topological order
        if stage in wanted:
            depth[stage] = 1 + max((depth[u] for u in graph[stage] if u in depth), default=0)
    counts: dict[int, int] = {}
    for d in depth.values():
        counts[d] = counts.get(d, 0) + 1
    return max(counts.values(), default=1)


def threads_per_stage(graph: dict[str, list[str]], wanted: list[str], cores: int, limit: int) -> int:
    """CPU threads of every stage of a run: the cores divided by the stages that run side by
    side (``limit``, at most the DAG's :func:`width`), at least one. A deterministic function
    of the DAG and the machine, never of timing, so two runs of one commit give one result."""
    return max(1, cores // max(1, min(limit, width(graph, wanted))))


class GpuSets:
    """The host's GPU sets (``infra.launch.gpu_sets``) handed out to stages: a training or
    sampling stage takes a free set and holds it until it ends, so GPU stages run one at a
    time per set while CPU-only stages start beside them. With a hostfile and no local GPUs,
    the nodes are one set. On a host without GPUs every stage is a CPU stage."""

    def __init__(self, settings: launch.LaunchSettings, gpus: list[str] | None = None):
        self.settings = settings
        # A hostfile job spans the nodes: one training stage on them at a time.
        self.free = launch.gpu_sets(settings, gpus) or ([[]] if settings.hostfile else [])
        self.held: dict[str, list[str]] = {}
        self.gpu_host = bool(self.free)

    def needs_gpu(self, stage: str) -> bool:
        """Whether ``stage`` runs on a GPU set here."""
        return self.gpu_host and self.settings.kind(stage) != "cpu"

    def take(self, stage: str) -> list[str] | None:
        """The free set ``stage`` now holds (None for a CPU stage). Raises IndexError when
        it needs one and none is free (the scheduler asks first)."""
        if not self.needs_gpu(stage):
            return None
        self.held[stage] = self.free.pop(0)
        return self.held[stage]

    def release(self, stage: str) -> None:
        """Give back the set ``stage`` held, if any."""
        if stage in self.held:
            self.free.append(self.held.pop(stage))


class Scheduler:
    """Slots for the stages of one pipeline run (thread-safe: Prefect runs each stage's task
    in a thread of its own).

    Args:
        graph: ``{stage: [upstream stages]}`` in topological order (infra.dag.stage_graph).
        wanted: the stages this run runs.
        limit: stages running at once.
        cores: CPU cores to divide (``infra.launch.cpu_cores``).
        gpus: the GPU sets (default: this host's, from the launch settings).
    """

    def __init__(self, graph: dict[str, list[str]], wanted: list[str], *, limit: int, cores: int,
                 gpus: GpuSets | None = None):
        self.limit = max(1, limit)
        self.height = heights(graph)
        self.threads = threads_per_stage(graph, wanted, cores, self.limit)
        self.gpus = gpus if gpus is not None else GpuSets(launch.launch_settings())
        self.failed: str | None = None
        self._cond = threading.Condition()
        self._waiting: set[str] = set()
        self._running: set[str] = set()

    def _first_to_start(self, stage: str) -> bool:
        """Whether ``stage`` is among the waiting stages that start now: the highest first,
        skipping GPU stages while no set is free."""
        slots, free = self.limit - len(self._running), len(self.gpus.free)
        for other in sorted(self._waiting, key=lambda s: (-self.height.get(s, 0), s)):
            if slots == 0:
                return False
            needs = self.gpus.needs_gpu(other)
            if needs and free == 0:
                continue
            if other == stage:
                return True
            slots, free = slots - 1, free - needs
        return False

    @contextlib.contextmanager
    def slot(self, stage: str) -> Iterator[tuple[int, list[str] | None]]:
        """Wait for a slot, then hold it for the block; yields (threads, GPU set or None).
        After a stage has failed no other stage starts (:class:`NotStarted`) until a retry
        of it succeeds; the running ones finish."""
        with self._cond:
            self._waiting.add(stage)
            try:
                while True:
                    if self.failed and self.failed != stage:
                        raise NotStarted(f"stage {stage} not started: stage {self.failed} failed")
                    if self._first_to_start(stage):
                        break
                    self._cond.wait(timeout=1.0)
            finally:
                self._waiting.discard(stage)
                self._cond.notify_all()
            self._running.add(stage)
            gpus = self.gpus.take(stage)
        try:
            yield self.threads, gpus
            if self.failed == stage:  # a retry succeeded
                self.failed = None
        except BaseException:
            self.failed = self.failed or stage
            raise
        finally:
            with self._cond:
                self._running.discard(stage)
                self.gpus.release(stage)
                self._cond.notify_all()


_SCHEDULERS: dict[str, Scheduler] = {}


@contextlib.contextmanager
def scheduling(key: str, scheduler: Scheduler) -> Iterator[Scheduler]:
    """Make ``scheduler`` the one :func:`slot` finds under ``key`` (a run's workspace) for the block."""
    _SCHEDULERS[key] = scheduler
    try:
        yield scheduler
    finally:
        _SCHEDULERS.pop(key, None)


@contextlib.contextmanager
def slot(key: str, stage: str) -> Iterator[tuple[int | None, list[str] | None]]:
    """A slot of the scheduler registered under ``key``; outside a pipeline run (no scheduler)
    every stage starts at once with the environment's threads: ``(None, None)``."""
    scheduler = _SCHEDULERS.get(key)
    if scheduler is None:
        yield None, None
        return
    with scheduler.slot(stage) as held:
        yield held

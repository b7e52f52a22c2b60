"""What every trainer shares, and the rules by which N ranks produce one result (DESIGN.md,
contract 4).

- **One loop** (:class:`Trainer`): engine, config fingerprint, resume from the last DeepSpeed
  checkpoint, StepLog resume, one StepLog row per step, a checkpoint every N steps. SFT, reward
  models and GRPO fill in ``train_step`` and a few hooks.
- **Rank 0 writes** (:func:`main_rank_writes`): the model folder, ``steps.jsonl``,
  ``samples.jsonl`` and checkpoint pruning are written by rank 0 alone, between barriers, so no
  rank reads a half-written file and no two ranks rename one folder.
- **Metrics are all-reduced** (:func:`gather_lists`, :func:`sum_over_ranks`): a step's metrics
  are those of the whole global batch. Row-level metrics (rewards, accuracy per source) are
  computed on rows gathered from every rank, so a mean per group is over the group's rows, not
  a mean of per-rank means; token-weighted sums are summed over ranks.
- **Data is sharded** (:func:`rank_share`): every rank draws the same global batch from the same
  seeded stream and takes a disjoint contiguous share of it.
- **ZeRO-3 weights are consolidated** before any save and any copy (:func:`full_state_dict`,
  :func:`copy_weights`, :func:`save_model`): under ZeRO-3 ``engine.module.state_dict()`` holds
  empty partitions.

Every collective here is a no-op on one rank, so the same code runs without a launcher.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from infra import launch
from infra.io import staged_dir
from infra.steplog import StepLog, truncate_jsonl

log = logging.getLogger(__name__)

# -- ranks ---------------------------------------------------------------------------------


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_main() -> bool:
    """Whether this process is global rank 0 (the one that writes)."""
    return launch.rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if _distributed():
        torch.distributed.barrier()


@contextlib.contextmanager
def main_rank_writes() -> Iterator[bool]:
    """A block in which rank 0 writes shared files: yields whether this rank should write.

    Barriers on entry (every rank has finished what it did before, e.g. its checkpoint shard)
    and on exit (no rank goes on to read before the write is complete).
    """
    barrier()
    try:
        yield is_main()
    finally:
        barrier()


def gather_lists(items: Sequence) -> list:
    """The concatenation of every rank's ``items`` in rank order (each rank's own list on one
    rank). Items must be picklable; meant for a step's rows (a few hundred small values)."""
    if not _distributed() or torch.distributed.get_world_size() == 1:
        return list(items)
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def sum_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value summed over ranks (float64); every rank must pass the same keys."""
    if not _distributed() or torch.distributed.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(total)
    return dict(zip(keys, total.tolist()))


def max_over_ranks(value: float) -> float:
    """The largest ``value`` over ranks (e.g. a wall time: the step waits for the slowest)."""
    if not _distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t)


def _collective_device() -> torch.device:
    """Where a tensor for a collective must live: NCCL reduces GPU tensors only (this rank's
    GPU), gloo CPU tensors."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_share(n: int, what: str = "rows") -> slice:
    """This rank's contiguous slice of ``n`` global items (rank r takes [r n/W, (r+1) n/W)).

    Raises ValueError naming ``what`` when ``n`` does not divide by the world size W.
    """
    world, rank = launch.world_size(), launch.rank()
    if n % world:
        raise ValueError(f"{n} {what} per step do not split over {world} ranks; make it a multiple of {world}")
    share = n // world
    return slice(rank * share, (rank + 1) * share)


def log_shard(trainer: str, step: int, ids: Sequence[int]) -> None:
    """A DEBUG line naming the global row ids this rank trains on at ``step``
    (``shard <trainer> step=S rank=R rows=[...]``), so a run can show that ranks' shares are
    disjoint (tests/test_distributed.py reads them with R1FLOW_LOG_LEVEL=DEBUG)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("shard %s step=%d rank=%d rows=%s", trainer, step, launch.rank(), json.dumps([int(i) for i in ids]))


def grad_accum_steps(batch_size: int, micro_batch: int) -> int:
    """``batch_size / (micro_batch x world size)``: micro-batches each rank accumulates per step.

    Raises ValueError naming the knobs when the global batch does not split into whole
    micro-batches on every rank.
    """
    world = launch.world_size()
    if micro_batch <= 0 or batch_size % (micro_batch * world):
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of micro_batch ({micro_batch}) "
                         f"x world size ({world}); change batch_size or micro_batch")
    return batch_size // (micro_batch * world)


# -- ZeRO-3 ----------------------------------------------------------------------------------


def partitioned(module: torch.nn.Module) -> bool:
    """Whether ``module``'s parameters are ZeRO-3 partitions (a ``ds_id`` on them)."""
    return any(hasattr(p, "ds_id") for p in module.parameters())


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """``module.state_dict()`` with whole tensors (CPU) on rank 0, None on other ranks.

    ZeRO-3 partitions are gathered one module at a time (``GatheredParameters``), so at most
    one layer is whole at once beyond the result; every rank must call. A tied weight appears
    under each of its names, as in ``state_dict()``.
    """
    if not partitioned(module):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()} if is_main() else None
    state: dict[str, torch.Tensor] = {}
    seen: dict[int, torch.Tensor] = {}  # a tied weight stays one tensor, so savers can drop its alias
    for prefix, sub in module.named_modules(remove_duplicate=False):
        own = dict(sub.named_parameters(recurse=False))
        with _gathered(list(own.values()), True):
            if is_main():
                for name, p in own.items():
                    if id(p) not in seen:
                        seen[id(p)] = p.detach().cpu().clone()
                    state[f"{prefix}.{name}" if prefix else name] = seen[id(p)]
                for name, buf in sub.named_buffers(recurse=False):
                    if name not in sub._non_persistent_buffers_set:
                        state[f"{prefix}.{name}" if prefix else name] = buf.detach().cpu().clone()
    return state if is_main() else None


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy ``source``'s parameters into ``target`` (same architecture), either or both
    ZeRO-3 partitioned: each module's own parameters are gathered, copied on rank 0 and
    re-partitioned from rank 0 (``GatheredParameters(modifier_rank=0)``). Every rank must call."""
    pairs = list(zip(source.modules(), target.modules()))
    zero3 = partitioned(source) or partitioned(target)
    for src, dst in pairs:
        params = list(src.parameters(recurse=False)) + list(dst.parameters(recurse=False))
        if not params:
            continue
        with _gathered(params, zero3, modifier_rank=0), torch.no_grad():
            if is_main() or not zero3:
                for a, b in zip(src.parameters(recurse=False), dst.parameters(recurse=False)):
                    b.data.copy_(a.data)


def load_full_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a whole (consolidated) state dict into ``module``, ZeRO-3 partitioned or not.
    ``state`` must be present on rank 0 at least; every rank must call."""
    if not partitioned(module):
        module.load_state_dict(state)
        return
    for prefix, sub in module.named_modules():
        params = dict(sub.named_parameters(recurse=False))
        if not params:
            continue
        with _gathered(list(params.values()), True, modifier_rank=0), torch.no_grad():
            if is_main():
                for name, p in params.items():
                    p.data.copy_(state[f"{prefix}.{name}" if prefix else name])


def _gathered(params: list, enabled: bool, modifier_rank: int | None = None):
    if not enabled:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank)


@contextlib.contextmanager
def gathered_for_generation(engine) -> Iterator[torch.nn.Module]:
    """Yield the engine's model with whole weights for one generation pass.

    Under ZeRO-3 on CUDA every parameter is gathered once (read-only) and released at the end,
    so the static-cache decoder (model/fast_decode.py), which reads weight tensors directly, can
    run. On CPU rollouts take the eager loop, whose module forwards gather each layer through
    ZeRO-3's hooks (a whole-model gather would be released by the first layer's hook anyway),
    and every rank must then decode in lockstep (:func:`needs_lockstep`).
    """
    module = engine.module
    gather = engine.zero_optimization_partition_weights() and engine.device.type == "cuda"
    with _gathered(list(module.parameters()), gather):
        yield module
    if gather:
        from model import fast_decode

        fast_decode.clear()  # its buffers point at the gathered storage, freed now


def needs_lockstep(engine) -> bool:
    """Whether generation on ``engine.module`` must run every rank through the same number of
    forwards (``model.rollout.generate(lockstep=True)``): ZeRO-3 weights that are not gathered
    for generation (on CPU, see :func:`gathered_for_generation`) are gathered layer by layer in
    each forward, a collective every rank must join, so a rank whose rows all ended early
    would leave the others waiting forever."""
    return (engine.zero_optimization_partition_weights() and engine.device.type != "cuda"
            and launch.world_size() > 1)


@contextlib.contextmanager
def seeded_sampling(device: torch.device, key: tuple) -> Iterator[torch.Generator | None]:
    """Sampling randomness that depends only on ``key`` (e.g. seed, step, chunk index), never
    on the rank, so runs of any world size that sample the same chunk draw the same tokens.

    On CPU yields a ``torch.Generator`` seeded from ``key``. On CUDA it yields None and seeds
    the default CUDA generator instead, inside ``fork_rng`` (the previous state is restored on
    exit): the static-cache decoder's CUDA graphs draw from the default generator, and an
    explicit generator would turn that path off (model/fast_decode.py ``supports``).
    """
    import hashlib

    seed = int.from_bytes(hashlib.sha256("/".join(map(str, key)).encode()).digest()[:7], "little")
    if device.type != "cuda":
        yield torch.Generator(device=device).manual_seed(seed)
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[index]), torch.cuda.device(index):
        torch.cuda.manual_seed(seed)
        yield None


def reference_engine(model: torch.nn.Module, policy_engine, micro_batch: int):
    """The frozen reference model for the KL term, placed like the policy.

    Under ZeRO-3 it is wrapped in an optimizer-less DeepSpeed ZeRO-3 engine, so each rank
    holds 1/N of it, as of the policy; otherwise it is a whole copy on each rank (memory:
    one more set of weights per rank, no optimizer state). Returns the module to call.
    """
    model = model.eval().requires_grad_(False)
    if not policy_engine.zero_optimization_partition_weights():
        return model.to(policy_engine.device)
    import deepspeed

    config = launch.ds_config(micro_batch=micro_batch, grad_accum=1, max_grad_norm=0.0)
    config.pop("optimizer", None)
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine.module


def save_model(engine, tokenizer, out: str | Path) -> Path:
    """Save the engine's whole model (safetensors + config) and the tokenizer to ``out``.

    Every rank must call: ZeRO-3 weights are consolidated first (:func:`full_state_dict`);
    rank 0 alone writes, through a staged folder renamed into place, then all ranks meet.
    """
    out = Path(out)
    state = full_state_dict(engine.module)
    with main_rank_writes() as writer:
        if writer:
            if not state:
                raise RuntimeError(f"{out}: the consolidated state dict is empty; not saving")
            with staged_dir(out) as tmp:
                engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
            log.info("saved %s (%d tensors)", out, len(state))
    return out


# -- the loop ----------------------------------------------------------------------------------


class Trainer:
    """The loop skeleton SFT, reward-model and GRPO trainers share.

    A subclass sets ``self.engine`` (``model.engine.make_engine``) and implements
    :meth:`train_step`; :meth:`run_loop` resumes from the latest checkpoint written under the same
    config fingerprint, truncates ``steps.jsonl`` (and ``side_logs``) to it, then runs the
    remaining steps, logging one row of global metrics per step (rank 0) and checkpointing
    every ``checkpoint_every`` steps. Hooks: :meth:`checkpoint_extra` / :meth:`restore_extra`
    (state saved beside the engine's, e.g. the reference model), :meth:`after_step`,
    :meth:`progress` (the progress bar's postfix).
    """

    desc = "train"
    side_logs: tuple[str, ...] = ()  # JSONL files of out_dir with a "step" key, truncated on resume

    def __init__(self, out_dir: str | Path, steps: StepLog):
        self.out_dir, self.steps = Path(out_dir), steps
        self.engine = None

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step (1-based); returns its metrics, the same on every rank."""
        raise NotImplementedError

    def checkpoint_extra(self) -> dict[str, dict]:
        """State dicts saved with each checkpoint (rank 0's count; every rank calls)."""
        return {}

    def restore_extra(self, extra: dict[str, dict]) -> None:
        """Restore what :meth:`checkpoint_extra` saved (every rank calls)."""

    def after_step(self, step: int, metrics: dict[str, float]) -> None:
        """Called on every rank after the step is logged, before any checkpoint."""

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        """The progress bar's postfix for a step's metrics."""
        return {}

    def run_loop(self, total: int, *, ckpt_dir: Path, fingerprint: str, checkpoint_every: int,
                 save_last: bool = False, extra_names: tuple[str, ...] = ()) -> dict[str, float]:
        """Resume, then run steps up to ``total``; returns the last step's metrics (empty when
        nothing was left to run). ``save_last`` also checkpoints the final step (a stage that
        trains several models then skips a finished one on resume). An MoE model's router loss
        is collected in ``self.router`` (model/moe.py :class:`RouterLoss`; every ``train_step``
        adds it to its loss and logs its step metrics) while the loop runs."""
        from model.moe import RouterLoss

        self.router = RouterLoss(self.engine)
        try:
            return self._steps(total, ckpt_dir=ckpt_dir, fingerprint=fingerprint, checkpoint_every=checkpoint_every,
                               save_last=save_last, extra_names=extra_names)
        finally:
            self.router.remove()

    def _steps(self, total: int, *, ckpt_dir: Path, fingerprint: str, checkpoint_every: int, save_last: bool,
               extra_names: tuple[str, ...]) -> dict[str, float]:
        from infra.progress import progress
        from model import checkpoint

        done, _, extra = checkpoint.load(self.engine, ckpt_dir, fingerprint, extra_names=extra_names)
        self.restore_extra(extra)
        with main_rank_writes() as writer:
            if writer:
                self.steps.resume(done)
                for name in self.side_logs:
                    truncate_jsonl(self.out_dir / name, done)
        metrics: dict[str, float] = {}
        bar = progress(range(done + 1, total + 1), desc=self.desc, initial=done, total=total, mininterval=2,
                       disable=not is_main())
        for step in bar:
            metrics = self.train_step(step)
            if is_main():
                self.steps(step, metrics)
            bar.set_postfix(self.progress(metrics))
            self.after_step(step, metrics)
            last = step == total
            if checkpoint_every and ((step % checkpoint_every == 0 and not last) or (save_last and last)):
                checkpoint.save(self.engine, ckpt_dir, step, fingerprint, extra=self.checkpoint_extra())
        return metrics

"""DeepSpeed engines for the trainers: one call wraps a model and its optimizer."""

from __future__ import annotations

import logging
from typing import Any

import torch

from infra import launch

log = logging.getLogger(__name__)


def make_engine(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.95),
    micro_batch: int,
    grad_accum: int = 1,
    max_grad_norm: float = 1.0,
    warmup_steps: int = 0,
    total_steps: int | None = None,
) -> Any:
    """A DeepSpeed engine over ``model`` with AdamW and linear warmup (+ cosine decay when
    ``total_steps`` is given). Runs as one CPU rank when no launcher set the environment.

    A torch optimizer is used on CPU: DeepSpeed's own Adam kernels cost a 90 s native build there.
    """
    import deepspeed

    launch.ensure_distributed_env()
    launch.prepare_cpu_deepspeed()
    config = launch.ds_config(micro_batch=micro_batch, grad_accum=grad_accum, max_grad_norm=max_grad_norm)
    params = [p for p in model.parameters() if p.requires_grad]
    fused = torch.cuda.is_available()
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup_steps, total_steps))
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config,
        dist_init_required=True,
    )
    log.info("DeepSpeed engine: zero stage %s, world size %d, micro batch %d x accum %d",
             engine.zero_optimization_stage(), launch.world_size(), micro_batch, grad_accum)
    return engine


def _lr_lambda(warmup_steps: int, total_steps: int | None):
    import math

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if not total_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor

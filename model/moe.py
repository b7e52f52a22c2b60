"""Mixture-of-Experts training support: the router's load-balancing loss in every trainer's loss,
and the experts' load logged per step.

DeepSeek-V3, the base of R1, is an MoE (671B parameters, 37B active per token; V3 report 2.1).
The tiny MoE bases are transformers' own classes (model/factory.py ``build_tiny_model`` with
``architecture="moe"``: Mixtral for the llama family, Qwen2-MoE for qwen2). Their causal-LM
forward returns ``aux_loss``, the Switch-Transformer load-balancing loss (Fedus et al. 2022,
eq. 4: ``E * sum_i f_i * P_i``, ``f_i`` the share of tokens routed to expert ``i``, ``P_i``
its mean router probability; ``transformers.models.mixtral.modeling_mixtral
.load_balancing_loss_func``), when called with ``output_router_logits=True``, but adds it to
the loss only when the model computes the loss from ``labels``. The trainers compute their own
losses (SFT cross-entropy, the GRPO objective), so :class:`RouterLoss` asks for the router
logits in each training forward (a forward pre-hook; decoding steps, whose attention mask is
longer than their one new token, must not compute the loss), collects ``aux_loss`` with a
forward hook, and adds ``router_aux_loss_coef`` times it before the backward pass, as the
model's own loss would.
"""

from __future__ import annotations

import torch


def is_moe(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the module a DeepSpeed engine wraps) routes tokens to experts."""
    config = getattr(getattr(model, "module", model), "config", None)
    return bool(getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None))


def _experts(config) -> tuple[int, int]:
    return (getattr(config, "num_experts", None) or config.num_local_experts), config.num_experts_per_tok


class RouterLoss:
    """Collects the load-balancing loss and expert load of an MoE model's training forwards.

    Installed on a model (or DeepSpeed engine) that :func:`is_moe`; on a dense model every
    method is a no-op. The hook records forwards made with gradients in training mode only
    (rollouts and reference passes are not trained on).

    - :meth:`add_to` (``loss`` -> ``loss + router_aux_loss_coef * mean aux_loss`` of the
      forwards since the last call), called right before ``engine.backward``;
    - :meth:`step_metrics` -> ``{"aux_loss", "expert_load/eN" (share of routed token slots
      of expert N, the top-k choices over real tokens of every layer), "expert_load_max"
      (the busiest expert's share times the expert count: 1.0 is perfectly balanced)}`` over
      the step, then resets.
    """

    def __init__(self, model: torch.nn.Module):
        inner = getattr(model, "module", model)
        self.enabled = is_moe(inner)
        self.losses: list[torch.Tensor] = []
        self.seen: list[float] = []
        self.counts: torch.Tensor | None = None
        if not self.enabled:
            return
        config = inner.config
        self.coef = float(getattr(config, "router_aux_loss_coef", 0.0))
        self.num_experts, self.top_k = _experts(config)
        inner.register_forward_pre_hook(self._ask, with_kwargs=True)
        inner.register_forward_hook(self._hook, with_kwargs=True)

    @staticmethod
    def _training(module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _ask(self, module, args, kwargs):
        if self._training(module):
            return args, {**kwargs, "output_router_logits": True}
        return None

    def _hook(self, module, args, kwargs, output) -> None:
        if not self._training(module):
            return
        aux = getattr(output, "aux_loss", None)
        if aux is None:
            return
        self.losses.append(aux)
        self.seen.append(float(aux.detach()))
        self._count(getattr(output, "router_logits", None), kwargs.get("attention_mask"))

    def _count(self, router_logits, attention_mask) -> None:
        if not router_logits:
            return
        with torch.no_grad():
            keep = None if attention_mask is None else attention_mask.reshape(-1).bool()
            counts = torch.zeros(self.num_experts)
            for layer in router_logits:  # (B*T, E) per MoE layer
                logits = layer if keep is None or keep.numel() != layer.shape[0] else layer[keep.to(layer.device)]
                chosen = logits.topk(self.top_k, dim=-1).indices.reshape(-1)
                counts += torch.bincount(chosen.cpu(), minlength=self.num_experts).float()
            self.counts = counts if self.counts is None else self.counts + counts

    def add_to(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the coefficient times the mean load-balancing loss of the forwards
        since the last call (``loss`` itself on a dense model or without forwards)."""
        if not self.enabled or not self.losses:
            return loss
        aux = torch.stack([a.to(loss.device) for a in self.losses]).mean()
        self.losses = []
        return loss + self.coef * aux

    def step_metrics(self) -> dict[str, float]:
        """The step's mean ``aux_loss`` and expert load (see the class doc); {} on a dense model."""
        if not self.enabled or not self.seen:
            return {}
        metrics = {"aux_loss": sum(self.seen) / len(self.seen)}
        if self.counts is not None and float(self.counts.sum()) > 0:
            share = self.counts / self.counts.sum()
            metrics.update({f"expert_load/e{i}": float(s) for i, s in enumerate(share)})
            metrics["expert_load_max"] = float(share.max()) * self.num_experts
        self.seen, self.counts, self.losses = [], None, []
        return metrics

"""Mixture-of-Experts training support: the router's load-balancing loss in every trainer's loss,
and the experts' load logged per step.

DeepSeek-V3, the base of R1, is an MoE (671B parameters, 37B active per token; V3 report 2.1).
The tiny MoE bases are transformers' own classes (model/factory.py ``build_tiny_model`` with
``architecture="moe"``: Mixtral for the llama family, Qwen2-MoE for qwen2). Their causal-LM
forward returns ``aux_loss``, the Switch-Transformer load-balancing loss (Fedus et al. 2022,
eq. 4: ``E * sum_i f_i * P_i``, ``f_i`` the share of tokens routed to expert ``i``, ``P_i``
its mean router probability; ``transformers.models.mixtral.modeling_mixtral
.load_balancing_loss_func``), when called with ``output_router_logits=True``, but adds it to
the loss only when the model computes the loss from ``labels``, and only a causal LM does: the
reward model's sequence-classification head drops the router logits. The trainers compute their
own losses (SFT cross-entropy, the GRPO objective, the reward models' pair and pointwise losses),
so :class:`RouterLoss` hooks the decoder body every head shares (``model.base_model``): a
forward pre-hook asks for the router logits in each training forward (decoding steps must not
compute the loss), a forward hook computes the balancing loss from them with the model class's
own ``load_balancing_loss_func`` (the same loss the causal LM would add), and :meth:`add_to`
adds ``router_aux_loss_coef`` times it before the backward pass. Nothing is copied to the host
during the step (no GPU sync per forward), and a step's metrics are summed over ranks.
"""

from __future__ import annotations

import sys

import torch

from model.trainer import sum_over_ranks


def is_moe(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the module a DeepSpeed engine wraps) routes tokens to experts."""
    config = getattr(getattr(model, "module", model), "config", None)
    return bool(getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None))


def _experts(config) -> tuple[int, int]:
    return (getattr(config, "num_experts", None) or config.num_local_experts), config.num_experts_per_tok


class RouterLoss:
    """Collects the load-balancing loss and expert load of an MoE model's training forwards.

    Installed on a model (or DeepSpeed engine) that :func:`is_moe`, of any head (causal LM or
    sequence classification); on a dense model every method is a no-op. The hooks act on
    forwards made with gradients in training mode only (rollouts, reference passes and scoring
    are not trained on).

    - :meth:`add_to` (``loss`` -> ``loss + router_aux_loss_coef * mean aux_loss`` of the
      forwards since the last call), called right before ``engine.backward``;
    - :meth:`step_metrics` -> ``{"aux_loss", "expert_load/eN" (share of routed token slots
      of expert N, the top-k choices over real tokens of every layer), "expert_load_max"
      (the busiest expert's share times the expert count: 1.0 is perfectly balanced)}`` over
      the step and every rank (a collective: every rank calls it), then resets;
    - :meth:`remove` takes the hooks off (the trainers call it when training ends).
    """

    def __init__(self, model: torch.nn.Module):
        inner = getattr(model, "module", model)
        self.enabled = is_moe(inner)
        self.losses: list[torch.Tensor] = []
        self.handles: list = []
        self._reset()
        if not self.enabled:
            return
        config = inner.config
        self.coef = float(getattr(config, "router_aux_loss_coef", 0.0))
        self.num_experts, self.top_k = _experts(config)
        self.balancing_loss = sys.modules[type(inner).__module__].load_balancing_loss_func
        body = inner.base_model
        self.handles = [body.register_forward_pre_hook(self._ask, with_kwargs=True),
                        body.register_forward_hook(self._hook, with_kwargs=True)]

    def _reset(self) -> None:
        self.aux_sum: torch.Tensor | float = 0.0
        self.forwards = 0
        self.counts: torch.Tensor | float = 0.0

    @staticmethod
    def _training(module) -> bool:
        return module.training and torch.is_grad_enabled()

    def _ask(self, module, args, kwargs):
        if self._training(module):
            return args, {**kwargs, "output_router_logits": True}
        return None

    def _hook(self, module, args, kwargs, output) -> None:
        router_logits = getattr(output, "router_logits", None)
        if not self._training(module) or not router_logits:
            return
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        aux = self.balancing_loss(tuple(router_logits), self.num_experts, self.top_k, mask)
        self.losses.append(aux)
        self.aux_sum = self.aux_sum + aux.detach().float()
        self.forwards += 1
        with torch.no_grad():
            keep = None if mask is None else mask.reshape(-1).bool()
            for layer in router_logits:  # (B*T, E) per MoE layer
                logits = layer if keep is None or keep.numel() != layer.shape[0] else layer[keep.to(layer.device)]
                chosen = logits.topk(self.top_k, dim=-1).indices.reshape(-1)
                # one_hot + sum, not bincount: deterministic on CUDA too.
                self.counts = self.counts + torch.nn.functional.one_hot(chosen, self.num_experts).sum(0).float()

    def add_to(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the coefficient times the mean load-balancing loss of the forwards
        since the last call (``loss`` itself on a dense model or without forwards)."""
        if not self.enabled or not self.losses:
            return loss
        aux = torch.stack([a.to(loss.device) for a in self.losses]).mean()
        self.losses = []
        return loss + self.coef * aux

    def step_metrics(self) -> dict[str, float]:
        """The step's mean ``aux_loss`` and expert load over all ranks (see the class doc); {} on
        a dense model or a step without training forwards on any rank."""
        if not self.enabled:
            return {}
        counts = self.counts if isinstance(self.counts, torch.Tensor) else torch.zeros(self.num_experts)
        local = {"aux_sum": float(self.aux_sum), "forwards": self.forwards,
                 **{f"e{i}": float(c) for i, c in enumerate(counts.tolist())}}
        total = sum_over_ranks(local)
        self._reset()
        self.losses = []
        if not total["forwards"]:
            return {}
        metrics = {"aux_loss": total["aux_sum"] / total["forwards"]}
        routed = sum(total[f"e{i}"] for i in range(self.num_experts))
        if routed > 0:
            share = [total[f"e{i}"] / routed for i in range(self.num_experts)]
            metrics.update({f"expert_load/e{i}": s for i, s in enumerate(share)})
            metrics["expert_load_max"] = max(share) * self.num_experts
        return metrics

    def remove(self) -> None:
        """Take the hooks off the model (idempotent)."""
        for handle in self.handles:
            handle.remove()
        self.handles, self.losses = [], []

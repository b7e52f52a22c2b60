"""Rollout engine: batched autoregressive sampling with a KV cache.

GRPO spends most of its wall time here, thousands of calls on a small CPU with ~1M-parameter
models, so the decode loop is kept to one model forward per step and a handful of batched
tensor ops: no per-sequence Python, no re-encoding of the prefix, no gradient tracking, and
the loop ends as soon as every row has produced EOS.

Conventions shared with the trainer (see `completion_logprobs`):

- prompts are LEFT-padded, completions RIGHT-padded, so `Rollout.sequences` is one
  rectangle whose completions all start at column P;
- position ids are `cumsum(attention_mask) - 1` (clamped at 0), so left padding never
  shifts a row's positions and a padded row sees exactly what it would see unpadded;
- log-probabilities are those of the policy's own tempered distribution,
  `log_softmax(logits / temperature)`, *without* the top-p truncation renormalised in;
  temperature 0 (greedy) uses `log_softmax(logits)`.

Departure from the obvious implementation: tokens are drawn by inverse CDF from one uniform
per row (same distribution, same seeded reproducibility) rather than `torch.multinomial`, whose
CPU kernel draws B x V random numbers and cost ~40% of a decode step at batch 128, vocab 1024.

Written against transformers 5.24 (Qwen2, Llama, ...). The cache keyword is `cache` in 5.x
and `past_key_values` in 4.x; it is picked from the model's forward signature (4.x untested).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from data.completions import THINK_OPEN
from model import fast_decode

logger = logging.getLogger(__name__)

# Float32 round-off in softmax/cumsum: a prefix whose mass is within this of top_p counts as
# having reached it, so top_p=0.8 over probs [0.5, 0.3, ...] keeps exactly two tokens.
_TOP_P_TOLERANCE = 1e-6
_PROMPT_TAIL_TOKENS = 8  # enough to hold "<think>" and the newline after it in any tokenizer


@dataclass
class Rollout:
    """One batch of sampled completions and everything the policy-gradient loss needs."""

    prompt_ids: torch.Tensor  # (B, P) long, LEFT-padded with pad_token_id
    prompt_mask: torch.Tensor  # (B, P) long, 1 = real prompt token
    completion_ids: torch.Tensor  # (B, C) long, RIGHT-padded with pad_token_id after EOS
    completion_mask: torch.Tensor  # (B, C) long, 1 up to AND including the first EOS, 0 after
    logprobs: torch.Tensor  # (B, C) float32, log_softmax(logits / T) at the sampled token; 0 where mask is 0
    finished: torch.Tensor  # (B,) bool, EOS was produced within max_new_tokens

    @property
    def sequences(self) -> torch.Tensor:
        """(B, P + C) prompt then completion; completions start at column P for every row."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """(B, P + C) long, 1 on real prompt tokens and on completion tokens up to EOS."""
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)


def concat_rollouts(parts: Sequence[Rollout], pad_token_id: int) -> Rollout:
    """One Rollout of the rows of ``parts`` in order: prompts left-padded and completions
    right-padded (mask 0, log-prob 0) to the widest part, so every row keeps its contract."""
    if len(parts) == 1:
        return parts[0]
    P = max(r.prompt_ids.shape[1] for r in parts)
    C = max(r.completion_ids.shape[1] for r in parts)

    def widen(t: torch.Tensor, width: int, value, left: bool) -> torch.Tensor:
        extra = width - t.shape[1]
        return torch.nn.functional.pad(t, (extra, 0) if left else (0, extra), value=value)

    return Rollout(
        prompt_ids=torch.cat([widen(r.prompt_ids, P, pad_token_id, True) for r in parts]),
        prompt_mask=torch.cat([widen(r.prompt_mask, P, 0, True) for r in parts]),
        completion_ids=torch.cat([widen(r.completion_ids, C, pad_token_id, False) for r in parts]),
        completion_mask=torch.cat([widen(r.completion_mask, C, 0, False) for r in parts]),
        logprobs=torch.cat([widen(r.logprobs, C, 0.0, False) for r in parts]),
        finished=torch.cat([r.finished for r in parts]),
    )


def left_pad(token_ids: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad a batch of token-id lists.

    Returns `(ids, mask)`, both `(B, max_len)` long; `mask` is 1 on real tokens.
    """
    if not token_ids:
        raise ValueError("left_pad needs at least one sequence")
    width = max(len(row) for row in token_ids)
    ids = torch.full((len(token_ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, row in enumerate(token_ids):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from `logits` (B, V).

    temperature 0 is greedy (argmax). Otherwise a token is drawn (reproducibly under a seeded
    `generator`) from softmax(logits / temperature), restricted when top_p < 1 to the smallest
    most-probable set whose mass reaches top_p (never empty).

    Returns `(token_ids (B,) long, logprobs (B,) float32)`, the log-probabilities being
    log_softmax(logits / temperature) at the drawn tokens, without top-p renormalisation
    (log_softmax(logits) when greedy).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float()
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tokens = logits.argmax(dim=-1)
    else:
        logp = torch.log_softmax(logits / temperature, dim=-1)
        probs = logp.exp()
        if top_p < 1.0:
            tokens = _sample_top_p(probs, top_p, generator)
        else:
            tokens = _sample_categorical(probs, generator)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


def _sample_categorical(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of `weights` (B, V) (non-negative, unnormalised), by inverse CDF.

    Same distribution as `torch.multinomial(weights, 1)` but draws B uniforms instead of the
    B * V random numbers multinomial consumes on CPU (2.0 ms against 0.08 ms at 128 x 1024).
    """
    cdf = weights.cumsum(dim=-1)  # (B, V), cdf[:, -1] is the row total
    total = cdf[:, -1:]  # (B, 1)
    u = torch.rand(total.shape, generator=generator, device=weights.device, dtype=cdf.dtype)
    # Strictly below the total, so the search always lands on a token with nonzero weight
    # (the first with cdf > target), never past the end or on a zero-weight tail.
    target = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(1)


def _sample_top_p(probs: torch.Tensor, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Sample from `probs` (B, V) restricted to each row's nucleus; returns (B,) token ids."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V) each
    # Mass strictly before each sorted token: keep it while the nucleus has not yet reached
    # top_p; the top token always survives, however small top_p is.
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop = mass_before >= top_p - _TOP_P_TOLERANCE  # (B, V) in sorted order
    drop[:, 0] = False
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    rank = _sample_categorical(sorted_probs, generator)  # (B,) position in sorted order
    return order.gather(1, rank[:, None]).squeeze(1)


@functools.lru_cache(maxsize=None)
def _class_forward_params(model_cls: type) -> frozenset[str]:
    """Keyword names of `model_cls.forward`, computed once per class."""
    return frozenset(inspect.signature(model_cls.forward).parameters)


def _forward_params(model: nn.Module) -> frozenset[str]:
    """Keyword names the model's forward accepts by name."""
    # DDP / DeepSpeed wrappers pass **kwargs on to `.module`, whose signature is the one that counts.
    return _class_forward_params(type(getattr(model, "module", model)))


def _cache_kwarg(model: nn.Module) -> str:
    """`cache` on transformers >= 5 models, `past_key_values` on older ones (and on mocks)."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _returned_cache(output, name: str):
    """The cache object a forward handed back under either name."""
    cache = getattr(output, name, None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _preallocated_cache(model: nn.Module, capacity: int):
    """A `DynamicCache` for `model` whose layers fill a buffer of `capacity` positions.

    The stock `DynamicLayer` re-concatenates the whole cache every step (an allocation and a
    full copy per layer per step, about a third of a decode step for a 1M-parameter model on
    CPU); writing into a preallocated buffer makes a step's cache update O(new tokens).
    Returns None (let the model build its own cache) for models without a Hugging Face config,
    and a stock cache when any layer is not a plain `DynamicLayer` (sliding window, hybrid).
    """
    config = getattr(getattr(model, "module", model), "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        return None
    from transformers.cache_utils import DynamicCache, DynamicLayer

    cache = DynamicCache(config=config)
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return cache
    growing = _growing_layer_class()
    cache.layers = [growing(capacity) for _ in layers]
    return cache


@functools.lru_cache(maxsize=None)
def _growing_layer_class() -> type:
    """Built on first use so that importing this module does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A `DynamicLayer` whose keys/values are views of buffers preallocated for `capacity` positions."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> None:
            # (B, kv_heads, capacity, head_dim); only the first `length` positions are ever read.
            k, v = key_states, value_states
            self._key_buffer = k.new_empty((*k.shape[:-2], self.capacity, k.shape[-1]))
            self._value_buffer = v.new_empty((*v.shape[:-2], self.capacity, v.shape[-1]))
            self.device, self.dtype = key_states.device, key_states.dtype
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.capacity:
                raise RuntimeError(f"KV cache capacity {self.capacity} exceeded ({end} positions)")
            self._key_buffer[..., self.length : end, :] = key_states
            self._value_buffer[..., self.length : end, :] = value_states
            self.length = end
            self.keys = self._key_buffer[..., :end, :]
            self.values = self._value_buffer[..., :end, :]
            return self.keys, self.values

        def keep_rows(self, keep: torch.Tensor) -> None:
            """Keep only batch rows ``keep`` (a copy of their buffers)."""
            self._key_buffer = self._key_buffer.index_select(0, keep)
            self._value_buffer = self._value_buffer.index_select(0, keep)
            self.keys = self._key_buffer[..., : self.length, :]
            self.values = self._value_buffer[..., : self.length, :]

    return GrowingLayer


_COMPACT_SHARE = 0.75  # drop finished rows from the decode batch once at most this share is alive


def _keep_rows(cache, keep: torch.Tensor | None) -> bool:
    """Keep only the rows ``keep`` (indices into the cache's batch) of every layer of a
    :func:`_preallocated_cache` cache; with ``keep=None`` only answers whether it can (a stock
    or foreign cache cannot: returns False)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not _growing_layer_class() for layer in layers):
        return False
    if keep is None:
        return True
    for layer in layers:
        if layer.is_initialized:
            layer.keep_rows(keep)
    return True


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions counting only real tokens, so left padding does not shift them."""
    return (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    lockstep: bool = False,
) -> Rollout:
    """Sample up to `max_new_tokens` completion tokens for each left-padded prompt row.

    One forward over the prompt fills the KV cache; every later step feeds only the token just
    sampled. Rows that have finished keep being fed `pad_token_id`, masked out of attention,
    so the batch never reshapes; the loop stops once every row has produced an EOS token.
    On CUDA, supported models (see `model.fast_decode.supports`) take the static-cache,
    CUDA-graph path with the same contract; set R1FLOW_FAST_DECODE=0 to force this loop.
    The model runs in eval mode under `torch.inference_mode` and its modes are restored.
    `lockstep` runs all `max_new_tokens` steps even when every row has ended (the extra
    columns are padding, masked out), so that ranks whose forwards hold ZeRO-3 collectives
    (partitioned weights gathered layer by layer) make the same number of forwards, as
    Hugging Face's `synced_gpus` does.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if prompt_ids.shape != prompt_mask.shape or prompt_ids.dim() != 2:
        raise ValueError(
            f"prompt_ids {tuple(prompt_ids.shape)} and prompt_mask {tuple(prompt_mask.shape)} must both be (B, P)"
        )
    device = prompt_ids.device
    prompt_mask = prompt_mask.to(device=device, dtype=torch.long)
    if not bool(prompt_mask.any(dim=1).all()):
        raise ValueError("every prompt row needs at least one real token (prompt_mask all zero in a row)")
    eos = torch.as_tensor(eos_token_id, dtype=torch.long, device=device).reshape(-1)
    sample = functools.partial(sample_next, temperature=temperature, top_p=top_p, generator=generator)
    with _eval_mode(model), torch.inference_mode():
        if fast_decode.supports(model, device, generator):
            steps, tokens, logprobs, attention_mask, finished = fast_decode.decode(
                model, prompt_ids, prompt_mask, max_new_tokens, eos, pad_token_id, sample,
                sample_key=(temperature, top_p),
                gumbel_temperature=temperature if temperature > 0 and top_p == 1.0 else None,
            )
        else:
            steps, tokens, logprobs, attention_mask, finished = _decode(
                model, prompt_ids, prompt_mask, max_new_tokens, eos, pad_token_id, sample, lockstep
            )
    P = prompt_ids.shape[1]
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("generated %d steps for %d rows, %d finished", steps, len(finished), int(finished.sum()))
    # Cloned outside inference_mode: inference tensors cannot later be saved for backward
    # (e.g. as embedding indices in the trainer's forward over `rollout.sequences`).
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=tokens[:, :steps].clone(),
        completion_mask=attention_mask[:, P : P + steps].clone(),
        logprobs=logprobs[:, :steps].clone(),
        finished=finished.clone(),
    )


def _decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos: torch.Tensor,
    pad_token_id: int,
    sample: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    lockstep: bool = False,
) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefill + decode loop; returns (steps, tokens, logprobs, attention_mask, finished).

    `tokens`/`logprobs` are (B, N) and `attention_mask` (B, P + N) buffers of which only the
    first `steps` completion columns were written.

    Finished rows leave the batch: once at most :data:`_COMPACT_SHARE` of the rows the model
    runs on are still alive, the KV cache keeps only theirs (:func:`_keep_rows`), so a step
    costs the rows still decoding, not the batch (a decode step of the 128-wide base costs
    about 2 ms plus 0.1 ms a row on one CPU thread; completions end at very different
    lengths). Sampling still sees all B rows (the dropped ones with zero logits, their tokens
    discarded as before), so every row draws the random numbers it drew in the full batch and
    the samples do not change. Not under `lockstep` (its ranks must run every forward) nor for
    a cache other than :func:`_preallocated_cache`'s.
    """
    B, P = prompt_ids.shape
    device = prompt_ids.device
    cache_name = _cache_kwarg(model)
    extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}
    # Preallocated once; decode step t writes column t (P + t in the attention mask).
    tokens = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)  # (B, N)
    logprobs = torch.zeros((B, max_new_tokens), dtype=torch.float32, device=device)  # (B, N)
    # (B, P + N): prompt mask, then 1 for each completion token up to and including EOS, 0 after.
    attention_mask = torch.zeros((B, P + max_new_tokens), dtype=torch.long, device=device)
    attention_mask[:, :P] = prompt_mask
    finished = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)
    next_position = prompt_mask.sum(dim=1, keepdim=True)  # (B, 1) position of completion token 0

    cache = _preallocated_cache(model, P + max_new_tokens)
    compact = not lockstep and _keep_rows(cache, None)
    rows = torch.arange(B, device=device)  # (A,) the rows the model still runs on
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=_position_ids(prompt_mask),
                use_cache=True, **{cache_name: cache}, **extra)
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :]  # (A, V)
        if len(rows) < B:
            logits = logits.new_zeros((B, logits.shape[-1])).index_copy_(0, rows, logits)
        token, logprob = sample(logits)  # (B,), (B,)
        alive = ~finished  # rows whose token at step t is real (EOS included)
        tokens[:, t] = token.masked_fill(finished, pad_token_id)
        logprobs[:, t] = logprob.masked_fill(finished, 0.0)
        attention_mask[:, P + t] = alive
        finished |= torch.isin(token, eos) & alive
        if t + 1 == max_new_tokens or (not lockstep and bool(finished.all())):
            return t + 1, tokens, logprobs, attention_mask, finished
        cache = _returned_cache(out, cache_name)
        if compact:
            keep = (~finished[rows]).nonzero().squeeze(1)  # (A',) positions in `rows`
            if len(keep) <= _COMPACT_SHARE * len(rows) and _keep_rows(cache, keep):
                rows = rows[keep]
        out = model(input_ids=tokens[rows, t : t + 1], attention_mask=attention_mask[rows, : P + t + 1],
                    position_ids=(next_position + t)[rows], use_cache=True, **{cache_name: cache})
    raise AssertionError("unreachable: the loop returns at t = max_new_tokens - 1")


def _packed_completion_logits(model: nn.Module, sequences: torch.Tensor, attention_mask: torch.Tensor,
                              completion_start: int) -> torch.Tensor:
    """(B, C, V) float32 logits predicting each completion column (garbage where masked), from
    one forward over the rows' real tokens packed together (model/packing.py)."""
    from model import packing

    device = sequences.device
    real = attention_mask.bool()
    prompt_lengths = real[:, :completion_start].sum(dim=1).tolist()
    ids, positions, place = packing.pack([row[keep].tolist() for row, keep in zip(sequences, real)], 0)
    out = model(input_ids=ids.to(device), position_ids=positions.to(device), use_cache=False)
    # Completion column c of row i is predicted at its packed column start + prompt length + c - 1.
    n_completion = sequences.shape[1] - completion_start
    rows = torch.tensor([r for r, _ in place], device=device)[:, None].expand(-1, n_completion)
    starts = torch.tensor([c + p - 1 for (_, c), p in zip(place, prompt_lengths)], device=device)
    columns = (starts[:, None] + torch.arange(n_completion, device=device)).clamp(max=ids.shape[1] - 1)
    return out.logits[rows, columns].float()


# Logits elements (rows x vocab) one chunk of the fused head materialises: 2**28 float32 = 1 GiB.
_HEAD_CHUNK_ELEMENTS = 1 << 28
LOGPROB_CHUNK_ENV = "R1FLOW_LOGPROB_CHUNK"


def completion_logprobs(
    model: nn.Module,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_start: int,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    chunk_rows: int | None = None,
    pack: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the completion tokens under `model`, with gradients.

    `sequences` and `attention_mask` are (B, T) as in `Rollout.sequences` /
    `Rollout.attention_mask`; completions occupy columns `completion_start:`. One forward with
    position ids `cumsum(mask) - 1`, exactly as `generate` uses. Returns (B, T - completion_start)
    float32 log_softmax(logits / temperature) at each completion token (temperature 0 means 1,
    as in greedy decoding), 0 where the attention mask is 0.

    With `with_entropy`, also returns the entropy of each position's tempered distribution,
    (B, T - completion_start), 0 where masked; it is for logging and carries no gradient.

    `chunk_rows` > 0 computes the output head in chunks of that many token positions, fused with
    the log-softmax (`_ChunkedHeadLogprob`): the (B, C, V) logits are never materialised, neither
    in the forward nor for the backward, which recomputes each chunk. 0 is the one-shot path.
    None (default) reads $R1FLOW_LOGPROB_CHUNK, else chunks on CUDA (about 1 GiB of float32
    logits per chunk) and takes the one-shot path elsewhere. Models the fused head cannot serve
    (no bias-free linear output head, ZeRO-3-partitioned weights, no `logits_to_keep`) always
    take the one-shot path. Both paths compute the same values up to matmul round-off.

    `pack` (one-shot path only) drops the padding before the forward: each row's real tokens
    (its prompt, then its completion up to EOS) are packed with the others' into shared rows
    (model/packing.py), and the log-probabilities come back in the (B, C) layout; the same
    values up to round-off, for the tokens the rows really have instead of B x T.
    """
    if not 0 < completion_start < sequences.shape[1]:
        raise ValueError(f"completion_start must be in (0, {sequences.shape[1]}), got {completion_start}")
    attention_mask = attention_mask.long()
    n_completion = sequences.shape[1] - completion_start
    targets = sequences[:, completion_start:]  # (B, C)
    padding = attention_mask[:, completion_start:] == 0  # (B, C), True after EOS
    kwargs = dict(input_ids=sequences, attention_mask=attention_mask,
                  position_ids=_position_ids(attention_mask), use_cache=False)
    head = _fusable_head(model)
    rows = _head_chunk_rows(chunk_rows, sequences.device, head)
    if rows > 0:
        logp, entropy = _chunked_head_forward(model, head, kwargs, n_completion, targets, temperature, rows,
                                              with_entropy)
        logp = logp.masked_fill(padding, 0.0)
        return (logp, entropy.masked_fill(padding, 0.0)) if with_entropy else logp
    if pack:
        logits = _packed_completion_logits(model, sequences, attention_mask, completion_start)
    else:
        extra = {}
        if "logits_to_keep" in _forward_params(model):
            # Logits only from the token before the first completion token onwards.
            extra["logits_to_keep"] = n_completion + 1
        out = model(**kwargs, **extra)
        logits = out.logits[:, -(n_completion + 1) : -1, :].float()  # (B, C, V), predicts column c from c - 1
    if temperature > 0:
        logits = logits / temperature
    # gather - logsumexp: avoids materialising a (B, C, V) log_softmax for the backward pass.
    logsumexp = logits.logsumexp(dim=-1)  # (B, C)
    logp = (logits.gather(-1, targets[..., None]).squeeze(-1) - logsumexp).masked_fill(padding, 0.0)
    if not with_entropy:
        return logp
    with torch.no_grad():
        # H = logsumexp - E_p[logits], one transient (B, C, V) softmax outside the graph.
        entropy = logsumexp - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    return logp, entropy.masked_fill(padding, 0.0)


def _fusable_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when the chunked path can replace it, else None."""
    base = getattr(model, "module", model)
    get = getattr(base, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if (not isinstance(head, nn.Linear) or head.bias is not None or "logits_to_keep" not in _forward_params(model)
            or hasattr(head.weight, "ds_id")):  # ZeRO-3 frees the weight outside the head's own forward
        return None
    return head


def _head_chunk_rows(chunk_rows: int | None, device: torch.device, head: nn.Linear | None) -> int:
    """Token positions per chunk of the fused head; 0 = one-shot path."""
    if head is None:
        return 0
    if chunk_rows is None:
        import os

        env = os.environ.get(LOGPROB_CHUNK_ENV)
        if env is not None and env.strip():
            chunk_rows = int(env)
        elif device.type == "cuda":
            chunk_rows = max(1, _HEAD_CHUNK_ELEMENTS // head.out_features)
        else:
            chunk_rows = 0
    return max(0, int(chunk_rows))


def _chunked_head_forward(model, head, kwargs, n_completion, targets, temperature, rows, with_entropy):
    """Run `model` with its output head swapped for the fused chunked log-prob head.

    The swap is a per-call override of `head.forward`, so the forward still goes through the
    model (and a DeepSpeed engine's own forward); it returns an empty tensor as "logits".
    """
    result = {}
    B = targets.shape[0]

    def fused(hidden: torch.Tensor) -> torch.Tensor:  # (B, C + 1, H): hidden[:, c] predicts column c + 1
        h = hidden[:, :-1, :].reshape(B * n_completion, hidden.shape[-1])
        logp, entropy = _ChunkedHeadLogprob.apply(h, head.weight, targets.reshape(-1), float(temperature), rows,
                                                  with_entropy)
        result["logp"] = logp.view(B, n_completion)
        result["entropy"] = entropy.view(B, n_completion) if with_entropy else None
        return hidden[..., :0]

    previous = head.__dict__.get("forward")  # an instance-level override already there, if any
    head.forward = fused
    try:
        model(**kwargs, logits_to_keep=n_completion + 1)
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous
    return result["logp"], result["entropy"]


class _ChunkedHeadLogprob(torch.autograd.Function):
    """log_softmax(h @ W.T / T)[target] (and the entropy) over row chunks, logits never kept.

    Forward: per chunk of rows, logits = linear(h, W) in the weights' dtype, upcast to float32
    (as the one-shot path's `.float()`), divided by T, then gather - logsumexp. Backward
    recomputes each chunk's logits: d logp / d logits = (onehot(target) - softmax) / T.
    The entropy output is for logging and carries no gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, rows, with_entropy):
        N = hidden.shape[0]
        logp = torch.empty(N, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty(N if with_entropy else 0, dtype=torch.float32, device=hidden.device)
        for s in range(0, N, rows):
            logits = _chunk_logits(hidden[s : s + rows], weight, temperature)
            lse = logits.logsumexp(dim=-1)
            logp[s : s + rows] = logits.gather(-1, targets[s : s + rows, None]).squeeze(-1) - lse
            if with_entropy:
                entropy[s : s + rows] = lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.temperature, ctx.rows = temperature, rows
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, targets = ctx.saved_tensors
        T, rows = ctx.temperature, ctx.rows
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        scale = 1.0 / T if T > 0 else 1.0
        for s in range(0, hidden.shape[0], rows):
            h, g_out = hidden[s : s + rows], grad_logp[s : s + rows].float()[:, None]  # (n, H), (n, 1)
            probs = torch.softmax(_chunk_logits(h, weight, T), dim=-1)  # (n, V)
            g = probs.mul_(-g_out)
            g.scatter_add_(-1, targets[s : s + rows, None], g_out)
            if scale != 1.0:
                g.mul_(scale)
            g = g.to(weight.dtype)  # the dtype the one-shot path's `.float()` hands its gradient back in
            if need_h:
                grad_h[s : s + rows] = g @ weight
            if need_w:
                grad_w += (g.t() @ h).float()
        return grad_h, None if grad_w is None else grad_w.to(weight.dtype), None, None, None, None


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, temperature: float) -> torch.Tensor:
    """(n, V) float32 logits / T of one chunk (T = 0 means 1)."""
    logits = torch.nn.functional.linear(h, weight).float()
    return logits / temperature if temperature > 0 else logits


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id generation stops on: the model's ``generation_config.eos_token_id`` (an int or a
    list, e.g. Qwen2.5-Instruct's ``<|im_end|>`` and ``<|endoftext|>``), then the tokenizer's
    EOS; each once, in that order. A model without a generation config gives the tokenizer's."""
    config = getattr(model, "generation_config", None)
    ids = getattr(config, "eos_token_id", None)
    found = [ids] if isinstance(ids, int) else list(ids or [])
    found += [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not found:
        raise ValueError("no EOS id: neither the model's generation_config nor the tokenizer names one")
    return list(dict.fromkeys(int(i) for i in found))


def decode_completions(tokenizer, rollout: Rollout, stop_ids: list[int] | None = None) -> list[str]:
    """Decode each row's completion tokens (mask = 1) without its EOS and padding.

    ``stop_ids`` are the EOS ids generation stopped on (:func:`stop_token_ids`); default: the
    tokenizer's EOS. Only these and the pad id are dropped, not every "special" token: whether
    added tokens such as ``<think>`` count as special differs between transformers releases
    (5.17 dropped them with ``skip_special_tokens=True``, 5.24 keeps them), and the format reward
    must see them.

    When the prompt itself ends by opening ``<think>`` (chat templates of reasoning models do),
    the completion is its continuation and the text returned starts with ``<think>``, so that
    data/completions.py sees the reasoning block a truncated completion never closed.
    """
    eos = tokenizer.eos_token_id if stop_ids is None else stop_ids
    drop = {tokenizer.pad_token_id, *([eos] if isinstance(eos, int) else eos or [])}
    texts = []
    for prompt, prompt_mask, ids, mask in zip(rollout.prompt_ids, rollout.prompt_mask,
                                              rollout.completion_ids, rollout.completion_mask):
        text = tokenizer.decode([t for t in ids[mask.bool()].tolist() if t not in drop], skip_special_tokens=False)
        tail = tokenizer.decode(prompt[prompt_mask.bool()][-_PROMPT_TAIL_TOKENS:].tolist(), skip_special_tokens=False)
        texts.append(THINK_OPEN + text if tail.rstrip().endswith(THINK_OPEN) else text)
    return texts

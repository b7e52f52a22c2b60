"""Static-cache decoding for Qwen2/Llama-family models: the rollout engine's GPU path.

`model.rollout.generate` hands a batch here when the model sits on CUDA (see `supports`).
The decode step is the model's own arithmetic re-expressed over fixed-shape buffers, so that
one step is a fixed sequence of kernels that a CUDA graph can replay with no Python between
them:

- one preallocated KV cache per layer, (2, B, kv_heads, capacity, head_dim); the key/value
  of sequence column c is written at slot c (prompt columns first, then completion columns);
- one additive attention bias (B, 1, 1, capacity): 0 on real prompt tokens and on completion
  tokens up to and including EOS, a large negative number elsewhere, so finished rows and
  left padding are masked, never removed: shapes never change;
- the step index lives on the device and the step advances it itself, so a replay needs no
  input from the host; the host checks `finished.all()` once every `_STOP_CHECK_EVERY` steps;
- attention reads the cache only up to the next multiple of `_BUCKET` columns: one graph per
  bucket, so early steps do not read the whole capacity.

The arithmetic follows transformers' Qwen2/Llama modules (RMSNorm in float32, rotary
embedding in the model dtype, SDPA with the module's scaling); q/k/v and gate/up weights are
concatenated (re-copied at every call, since training moves them) so each is one matrix
product, and on CUDA the two per-layer blocks around attention are torch.compiled (fused
elementwise work: 330 kernels per step become 180). Semantics are those of the eager path
(`model.rollout._decode`): same masks, positions, stopping and log-probabilities; in float32 the
tokens are identical (tests/test_fast_decode.py, and on an H200 in benchmarks/decode.py), in bf16
they agree up to the rounding of near-tied logits.

Departure: plain tempered sampling (top_p = 1) draws by Gumbel-max, argmax(logits / T + G),
instead of the eager path's inverse CDF, whose (B, V) cumsum is a slow scan on GPU. Same
distribution, another random stream; a seeded `generator` keeps the eager path.

Prompts are left-padded internally to a multiple of `_PROMPT_ALIGN` columns so that GRPO's
varying prompt lengths reuse one decoder (and its graphs); the extra columns are masked. The
last decoder is cached with its KV cache (3.0 GB at batch 256, 320 columns, 124M shape) until
`clear()` or a call of another shape. Everything here also runs on CPU without graphs, which is
how the tests check it. Measured figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_SUPPORTED_TYPES = ("qwen2", "llama")
_BUCKET = 32  # attention window granularity (columns); one CUDA graph per bucket
_PROMPT_ALIGN = 32  # internal prompt width multiple, so nearby prompt lengths share graphs
_STOP_CHECK_EVERY = 16  # host syncs on `finished.all()` this often (steps)
_DISABLE_ENV = "R1FLOW_FAST_DECODE"  # set to 0 to force the eager path
_COMPILE_ENV = "R1FLOW_DECODE_COMPILE"  # 0: do not torch.compile the per-layer blocks of decode steps
_ATTENTION_ENV = "R1FLOW_DECODE_ATTENTION"  # sdpa (torch picks the kernel) | efficient | manual
_COMPILE_MODE_ENV = "R1FLOW_DECODE_COMPILE_MODE"  # torch.compile mode, e.g. max-autotune-no-cudagraphs


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def supports(model: nn.Module, device: torch.device, generator: torch.Generator | None) -> bool:
    """Whether `generate` may take the static-cache path for this model and call.

    Only on CUDA (CPU keeps the eager path and its pinned behaviour), for plain Qwen2/Llama
    decoders with full (non-sliding) attention, SiLU MLPs and position-only rotary embeddings,
    with materialised weights (ZeRO-3 partitions only while gathered, e.g. inside
    `model.trainer.gathered_for_generation`), and no explicit sampling generator (the graphs
    draw from the default CUDA generator, which `model.trainer.seeded_sampling` seeds; an
    explicit generator keeps the eager path).
    """
    if device.type != "cuda" or os.environ.get(_DISABLE_ENV, "1") == "0" or generator is not None:
        return False
    return _supported_architecture(getattr(model, "module", model))


def _supported_architecture(model: nn.Module) -> bool:
    """Whether `StaticDecoder` reproduces this model's forward (see `supports`)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in _SUPPORTED_TYPES:
        return False
    if getattr(config, "use_sliding_window", False) or getattr(config, "hidden_act", "silu") != "silu":
        return False
    if getattr(config, "mlp_bias", False):
        return False  # the fused gate/up and down products carry no bias
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", "linear", "llama3", "yarn"):
        return False  # "dynamic" and friends depend on the sequence length, not only the position
    if getattr(getattr(model, "model", None), "layers", None) is None:
        return False
    # A ZeRO-3 partition outside GatheredParameters is an empty tensor; gathered, it is whole.
    return all(p.numel() > 0 for p in model.parameters())


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalised in float32, cast back, then scaled."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _attention_inputs(x, ln, qkv, qkv_bias, cos, sin, heads: int, kv_heads: int, head_dim: int, eps: float):
    """Norm, fused q/k/v projection and rotary embedding of x (B, T, hidden).

    Returns q (B, H, T, D), k and v (B, KV, T, D); cos/sin are (B, T, D) in the model dtype.
    """
    B, T = x.shape[0], x.shape[1]
    H, KV, D = heads, kv_heads, head_dim
    y = F.linear(_rms_norm(x, ln, eps), qkv, qkv_bias)  # (B, T, (H + 2 KV) D)
    # q and k are adjacent in the fused output: one rotary pass over both.
    qk = y[..., : (H + KV) * D].view(B, T, H + KV, D)
    half = D // 2
    rotated = torch.cat((-qk[..., half:], qk[..., :half]), dim=-1)
    qk = qk * cos[:, :, None] + rotated * sin[:, :, None]
    v = y[..., (H + KV) * D :].view(B, T, KV, D)
    return qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2), v.transpose(1, 2)


def _output_and_mlp(x, att, o, o_bias, ln, gate_up, down, eps: float):
    """Attention output projection + residual, then the SiLU-gated MLP + residual; att (B, H, T, D)."""
    B, H, T, D = att.shape
    x = x + F.linear(att.transpose(1, 2).reshape(B, T, H * D), o, o_bias)
    gate, up = F.linear(_rms_norm(x, ln, eps), gate_up).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, down)


def _gumbel_sample(logits: torch.Tensor, uniform: torch.Tensor, temperature: float):
    """Token ~ softmax(logits / T) as argmax(logits / T + Gumbel noise); logits and `uniform` (B, V).

    Same distribution as the eager path's inverse-CDF draw, without its (B, V) cumsum (a slow
    scan on GPU); returns (tokens (B,), log_softmax(logits / T) at them (B,) float32).
    """
    scaled = logits.float() / temperature
    noise = -torch.log(-torch.log(uniform))  # standard Gumbel; u = 0 gives -inf, never chosen
    tokens = (scaled + noise).argmax(dim=-1)
    logprobs = scaled.gather(1, tokens[:, None]).squeeze(1) - scaled.logsumexp(dim=-1)
    return tokens, logprobs


def _compiled_blocks():
    """The per-layer blocks and the sampler compiled (fused elementwise work) for decode steps."""
    mode = os.environ.get(_COMPILE_MODE_ENV) or None  # never a cudagraphs mode: the step is graphed whole
    compile_ = functools.partial(torch.compile, dynamic=False, fullgraph=True, mode=mode)
    return compile_(_attention_inputs), compile_(_output_and_mlp), compile_(_gumbel_sample)


class _Weights:
    """The decoder's weights, with q/k/v and gate/up concatenated; `refresh` re-copies them.

    Copies rather than views so the fused matrices exist; refreshed at every `generate` call
    because training updates the parameters between calls (in place, so pointers stay valid
    for the CUDA graphs, which read these copies).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.head = model.get_output_embeddings().weight
        self.layers = [self._fuse(layer) for layer in inner.layers]
        self.pointers = self._pointers()

    def _pointers(self) -> tuple[int, ...]:
        """Storage addresses of every parameter the graphs read directly (all but the fused copies)."""
        return tuple(p.data_ptr() for p in self.model.parameters())

    def moved(self) -> bool:
        """Whether a parameter's storage was replaced since capture (graphs would read the old one)."""
        return self._pointers() != self.pointers

    @staticmethod
    def _fuse(layer: nn.Module) -> dict[str, torch.Tensor | None]:
        att, mlp = layer.self_attn, layer.mlp
        qkv = [att.q_proj, att.k_proj, att.v_proj]
        bias = None
        if qkv[0].bias is not None:
            bias = torch.cat([m.bias.detach() for m in qkv])
        return {
            "ln1": layer.input_layernorm.weight,
            "ln2": layer.post_attention_layernorm.weight,
            "qkv": torch.cat([m.weight.detach() for m in qkv]),
            "qkv_bias": bias,
            "o": att.o_proj.weight,
            "o_bias": att.o_proj.bias,
            "gate_up": torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()]),
            "down": mlp.down_proj.weight,
        }

    def refresh(self) -> None:
        for fused, layer in zip(self.layers, self.model.model.layers):
            att, mlp = layer.self_attn, layer.mlp
            torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight], out=fused["qkv"])
            if fused["qkv_bias"] is not None:
                torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias], out=fused["qkv_bias"])
            torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], out=fused["gate_up"])


class StaticDecoder:
    """Prefill + fixed-shape decode steps for one (batch, prompt width, max_new_tokens) shape.

    `run(prompt_ids, prompt_mask)` returns `(steps, tokens (B, N), logprobs (B, N),
    completion_mask (B, N), finished (B,))` exactly as `model.rollout._decode` defines them
    (only the first `steps` columns are meaningful). With `use_graphs` (CUDA only) the decode
    steps are captured once per attention bucket and replayed.
    """

    def __init__(self, model: nn.Module, batch: int, prompt_width: int, max_new_tokens: int, *,
                 sample: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 eos: torch.Tensor, pad_token_id: int, use_graphs: bool, compile_blocks: bool = False,
                 gumbel_temperature: float | None = None):
        config = model.config
        self.model, self.sample, self.eos, self.pad = model, sample, eos, pad_token_id
        self.gumbel_temperature = gumbel_temperature  # set: sample by Gumbel-max at this temperature
        self.attention = os.environ.get(_ATTENTION_ENV, "sdpa")
        self.B, self.P, self.N = batch, prompt_width, max_new_tokens
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.scaling = getattr(model.model.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.capacity = _round_up(self.P + self.N, _BUCKET)
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
        self.dtype, self.device = dtype, device
        self.weights = _Weights(model)
        self.neg = torch.finfo(dtype).min
        positions = torch.arange(self.capacity, device=device)[None]  # (1, capacity)
        probe = torch.empty(0, device=device, dtype=dtype)
        cos, sin = model.model.rotary_emb(probe, positions)  # (1, capacity, head_dim) each, model dtype
        self.cos, self.sin = cos[0], sin[0]
        shape = (2, batch, self.kv_heads, self.capacity, self.head_dim)
        self.kv = [torch.zeros(shape, device=device, dtype=dtype) for _ in model.model.layers]
        self.bias = torch.full((batch, 1, 1, self.capacity), self.neg, device=device, dtype=dtype)
        self.tokens = torch.full((batch, self.N), pad_token_id, dtype=torch.long, device=device)
        self.logprobs = torch.zeros((batch, self.N), dtype=torch.float32, device=device)
        self.completion_mask = torch.zeros((batch, self.N), dtype=torch.long, device=device)
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self.current = torch.full((batch,), pad_token_id, dtype=torch.long, device=device)  # token fed next
        self.first_position = torch.zeros(batch, dtype=torch.long, device=device)  # position of completion token 0
        self.t = torch.zeros(1, dtype=torch.long, device=device)  # index of the completion token fed next
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._compiled = _compiled_blocks() if compile_blocks else None
        if use_graphs:
            self._capture()

    # -- the transformer, over (B, T) new tokens against the cache --------------------------

    def _layer(self, i: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               columns: torch.Tensor, bias: torch.Tensor, length: int) -> torch.Tensor:
        """x (B, T, hidden) at cache `columns` (T,); attends to cache[:length] under `bias` (B, 1, T, length)."""
        w = self.weights.layers[i]
        fused = self._compiled[:2] if (self._compiled is not None and x.shape[1] == 1) else None
        attention_inputs, mlp_block = fused or (_attention_inputs, _output_and_mlp)
        q, k, v = attention_inputs(x, w["ln1"], w["qkv"], w["qkv_bias"], cos, sin,
                                   self.heads, self.kv_heads, self.head_dim, self.eps)
        cache = self.kv[i]
        cache[0].index_copy_(2, columns, k)
        cache[1].index_copy_(2, columns, v)
        att = self._attend(q, cache[0, :, :, :length], cache[1, :, :, :length], bias)  # (B, H, T, D)
        return mlp_block(x, att, w["o"], w["o_bias"], w["ln2"], w["gate_up"], w["down"], self.eps)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attention of q (B, H, T, D) over k/v (B, KV, L, D) under the additive `bias`."""
        gqa = self.heads != self.kv_heads
        if self.attention == "manual" and not gqa and q.shape[2] == 1:
            # Two batched GEMVs and a softmax: reads K and V once, no tile of padded query rows.
            scores = torch.matmul(q, k.transpose(-1, -2)).float() * self.scaling + bias  # (B, H, 1, L)
            return torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v)
        if self.attention == "efficient" and q.is_cuda:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scaling, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scaling, enable_gqa=gqa)

    def _logits(self, ids: torch.Tensor, positions: torch.Tensor, columns: torch.Tensor,
                bias: torch.Tensor, length: int) -> torch.Tensor:
        """(B, V) logits after the last of `ids` (B, T) at `positions` (B, T), cache `columns` (T,)."""
        x = F.embedding(ids, self.weights.embed)
        cos, sin = self.cos[positions], self.sin[positions]  # (B, T, D)
        for i in range(len(self.kv)):
            x = self._layer(i, x, cos, sin, columns, bias, length)
        return F.linear(_rms_norm(x[:, -1], self.weights.norm, self.eps), self.weights.head)

    # -- bookkeeping shared with the eager path ------------------------------------------------

    def _draw(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The call's sampler, or the Gumbel-max draw when it is plain tempered sampling."""
        if self.gumbel_temperature is None:
            return self.sample(logits)
        uniform = torch.rand(logits.shape, device=logits.device, dtype=torch.float32)  # eager: graph-safe RNG
        sampler = self._compiled[2] if self._compiled is not None else _gumbel_sample
        return sampler(logits, uniform, self.gumbel_temperature)

    def _record(self, logits: torch.Tensor, index: torch.Tensor) -> None:
        """Sample from `logits` (B, V) as completion token `index` (1,) and update every buffer."""
        token, logprob = self._draw(logits)  # (B,), (B,)
        finished = self.finished
        alive = ~finished  # rows whose token at this index is real (EOS included)
        kept = token.masked_fill(finished, self.pad)
        self.tokens.index_copy_(1, index, kept[:, None])
        self.logprobs.index_copy_(1, index, logprob.masked_fill(finished, 0.0)[:, None])
        self.completion_mask.index_copy_(1, index, alive[:, None].long())
        column_bias = finished.to(self.dtype) * self.neg  # (B,) 0 where alive
        self.bias.index_copy_(3, self.P + index, column_bias.view(-1, 1, 1, 1))
        is_eos = (token[:, None] == self.eos[None, :]).any(dim=1)
        torch.logical_or(finished, is_eos & alive, out=finished)
        self.current.copy_(kept)

    def _step(self, length: int) -> None:
        """Feed `current` as completion token t, sample token t + 1, advance t (graph-safe)."""
        column = self.P + self.t  # (1,)
        positions = (self.first_position[:, None] + self.t)  # (B, 1)
        bias = self.bias[:, :, :, :length]
        logits = self._logits(self.current[:, None], positions, column, bias, length)
        self._record(logits, self.t + 1)
        self.t.add_(1)

    def _prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> None:
        B, P = prompt_ids.shape
        self.tokens.fill_(self.pad)
        self.logprobs.zero_()
        self.completion_mask.zero_()
        self.finished.zero_()
        self.t.zero_()
        self.bias.fill_(self.neg)
        self.bias[:, 0, 0, :P].masked_fill_(prompt_mask.bool(), 0.0)
        self.first_position.copy_(prompt_mask.sum(dim=1))
        positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
        # (B, 1, P, P): causal over real keys; each query also sees itself, so the queries of
        # padding columns (outputs never used, keys always masked) are never fully masked.
        causal = torch.ones(P, P, dtype=torch.bool, device=self.device).tril()
        allowed = (causal[None] & prompt_mask.bool()[:, None, :]) | torch.eye(P, dtype=torch.bool, device=self.device)
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill(~allowed, self.neg)
        columns = torch.arange(P, device=self.device)
        logits = self._logits(prompt_ids, positions, columns, bias[:, None], P)
        self._record(logits, torch.zeros(1, dtype=torch.long, device=self.device))

    # -- CUDA graphs ------------------------------------------------------------------------------

    def _lengths(self) -> list[int]:
        """Attention windows the decode steps need: step t feeds column P + t, reads P + t + 1 columns."""
        return sorted({min(self.capacity, _round_up(self.P + t + 1, _BUCKET)) for t in range(self.N - 1)})

    def _capture(self) -> None:
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for length in self._lengths():
                for _ in range(2):  # warm-up: cuBLAS/SDPA handles and workspaces outside the capture
                    self.t.zero_()
                    self._step(length)
        torch.cuda.current_stream().wait_stream(stream)
        for length in self._lengths():
            self.t.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._step(length)
            self.graphs[length] = graph
        torch.cuda.synchronize()

    # -- one call ------------------------------------------------------------------------------

    def run(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
        """Prefill then decode until every row has produced EOS or N tokens exist."""
        self.weights.refresh()
        self._prefill(prompt_ids, prompt_mask)
        for t in range(self.N - 1):
            if t % _STOP_CHECK_EVERY == 0 and bool(self.finished.all()):
                break
            length = min(self.capacity, _round_up(self.P + t + 1, _BUCKET))
            graph = self.graphs.get(length)
            if graph is not None:
                graph.replay()
            else:
                self._step(length)
        # Columns past the last real token hold padding only: the eager loop's step count.
        steps = int(self.completion_mask.sum(dim=1).max())
        return steps, self.tokens, self.logprobs, self.completion_mask, self.finished


_decoders: dict[tuple, StaticDecoder] = {}


def decode(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos: torch.Tensor,
    pad_token_id: int,
    sample: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    sample_key: tuple = (),
    use_graphs: bool | None = None,
    gumbel_temperature: float | None = None,
) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Static-cache counterpart of `model.rollout._decode` (same return contract).

    Returns (steps, tokens (B, N), logprobs (B, N), attention_mask (B, P + N), finished (B,)).
    One decoder (and its CUDA graphs, KV cache) is kept for the last shape used; `sample_key`
    identifies the sampling settings baked into the graphs. With `gumbel_temperature`, tokens
    are drawn by Gumbel-max at that temperature instead of by `sample` (same distribution,
    another random stream). Graphs default to on for CUDA; the per-layer blocks are
    torch.compiled when graphs are on, unless R1FLOW_DECODE_COMPILE=0.
    """
    model = getattr(model, "module", model)
    B, P = prompt_ids.shape
    width = _round_up(P, _PROMPT_ALIGN)
    if use_graphs is None:
        use_graphs = prompt_ids.device.type == "cuda"
    compile_blocks = use_graphs and os.environ.get(_COMPILE_ENV, "1") == "1"
    key = (id(model), B, width, max_new_tokens, tuple(eos.tolist()), pad_token_id, sample_key, use_graphs,
           compile_blocks, os.environ.get(_ATTENTION_ENV, "sdpa"), os.environ.get(_COMPILE_MODE_ENV), gumbel_temperature, next(model.parameters()).dtype)
    decoder = _decoders.get(key)
    if decoder is None or decoder.model is not model or decoder.weights.moved():
        _decoders.clear()  # one shape at a time: the KV cache is the largest allocation here
        build = functools.partial(StaticDecoder, model, B, width, max_new_tokens, sample=sample, eos=eos,
                                  pad_token_id=pad_token_id, use_graphs=use_graphs,
                                  gumbel_temperature=gumbel_temperature)
        try:
            decoder = build(compile_blocks=compile_blocks)
        except Exception:  # e.g. no C compiler for Triton: the uncompiled blocks are still graphed
            if not compile_blocks:
                raise
            logger.warning("torch.compile of the decode blocks failed; using uncompiled blocks", exc_info=True)
            decoder = build(compile_blocks=False)
        _decoders[key] = decoder
        logger.info("static decoder for batch %d, prompt width %d, %d new tokens (%d graphs)",
                    B, width, max_new_tokens, len(decoder.graphs))
    else:
        decoder.sample = sample
    ids = F.pad(prompt_ids, (width - P, 0), value=pad_token_id)
    mask = F.pad(prompt_mask, (width - P, 0), value=0)
    steps, tokens, logprobs, completion_mask, finished = decoder.run(ids, mask)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    return steps, tokens.clone(), logprobs.clone(), attention_mask, finished.clone()


def clear() -> None:
    """Drop the cached decoder (its KV cache and graphs)."""
    _decoders.clear()

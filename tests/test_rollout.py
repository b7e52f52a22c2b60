"""Rollout engine tests.

Sampling, masking and stopping are checked exactly against a mock model whose next-token
logits are a fixed table indexed by the last input token (no weights involved); the KV cache
and position-id conventions are checked against one full forward of a tiny random Qwen2.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from model import rollout as rollout_module
from model.rollout import (
    completion_logprobs, concat_rollouts, decode_completions, generate, left_pad, sample_next,
)

PAD = 0
EOS = 2


class TableLM(nn.Module):
    """Mock causal LM: logits at position t are `table[input_ids[:, t]]`.

    Records every call (inputs, masks, positions, the cache it was handed, its mode) so the
    tests can check what the engine feeds it. The "cache" it returns is just a call counter.
    """

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table.float())
        self.calls: list[SimpleNamespace] = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True, **kw):
        self.calls.append(SimpleNamespace(
            input_ids=input_ids.clone(), attention_mask=attention_mask.clone(), position_ids=position_ids.clone(),
            cache=past_key_values, training=self.training, inference=torch.is_inference_mode_enabled(),
        ))
        return SimpleNamespace(logits=self.table[input_ids], past_key_values=("cache", len(self.calls)))


class CacheKwargLM(TableLM):
    """Same mock with the transformers >= 5 keyword (`cache`) instead of `past_key_values`."""

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=True, **kw):
        out = super().forward(input_ids, attention_mask, position_ids, past_key_values=cache)
        return SimpleNamespace(logits=out.logits, cache=out.past_key_values)


def chain_table(next_token: dict[int, int], vocab: int = 8) -> torch.Tensor:
    """(V, V) logits whose argmax after token i is next_token[i], with distinct runner-ups."""
    table = torch.arange(vocab, dtype=torch.float32).repeat(vocab, 1) * 0.1  # (V, V)
    for i, j in next_token.items():
        table[i, j] = 5.0
    return table


# 1 -> 3 -> 4 -> 5 -> EOS(2) -> 0 -> 1 ...; 6 -> 7 -> 6 never reaches EOS.
CHAIN = {0: 1, 1: 3, 3: 4, 4: 5, 5: EOS, EOS: 0, 6: 7, 7: 6}


def test_left_pad_right_aligns_tokens():
    ids, mask = left_pad([[5, 6, 7], [9], [3, 4]], pad_token_id=PAD)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9], [0, 3, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_greedy_follows_argmax_chain_and_stops_per_row():
    model = TableLM(chain_table(CHAIN))
    ids, mask = left_pad([[6, 1], [4], [7, 6, 5]], PAD)  # EOS after 4, 2 and 1 tokens
    r = generate(model, ids, mask, max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    assert r.completion_ids.tolist() == [[3, 4, 5, EOS], [5, EOS, PAD, PAD], [EOS, PAD, PAD, PAD]]
    assert r.completion_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    assert r.finished.tolist() == [True, True, True]
    # greedy logprobs are log_softmax(logits) at the argmax; 0 after EOS
    prev = torch.tensor([[1, 3, 4, 5], [4, 5, 0, 0], [5, 0, 0, 0]])
    expected = torch.log_softmax(model.table[prev], dim=-1).gather(-1, r.completion_ids[..., None]).squeeze(-1)
    assert torch.equal(r.logprobs, expected * r.completion_mask)
    assert r.sequences.shape == r.attention_mask.shape == (3, 3 + 4)
    assert torch.equal(r.attention_mask, torch.cat([mask, r.completion_mask], dim=1))


def test_decode_feeds_last_token_positions_mask_and_cache():
    model = TableLM(chain_table(CHAIN))
    ids, mask = left_pad([[6, 1], [4]], PAD)
    r = generate(model, ids, mask, max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    # one prefill + one forward per further step; the loop ends the step the last row hits EOS
    assert len(model.calls) == r.completion_ids.shape[1] == 4
    prefill, first, *_, last = model.calls
    assert prefill.position_ids.tolist() == [[0, 1], [0, 0]]  # left padding does not shift positions
    assert prefill.cache is None
    assert first.input_ids.tolist() == [[3], [5]] and first.position_ids.tolist() == [[2], [1]]
    assert first.cache == ("cache", 1)  # whatever the model returned is handed back
    # row 1 finished at step 1: it is fed PAD, masked out, from then on
    assert last.input_ids.tolist() == [[5], [PAD]]
    assert last.attention_mask.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 0]]
    assert last.position_ids.tolist() == [[4], [3]]


def test_lockstep_makes_every_forward_yet_samples_the_same():
    # ZeRO-3 ranks gather weights inside each forward: all must make max_new_tokens forwards.
    ids, mask = left_pad([[6, 1], [4], [7, 6, 5]], PAD)  # every row ends within 4 tokens
    free, locked = TableLM(chain_table(CHAIN)), TableLM(chain_table(CHAIN))
    a = generate(free, ids, mask, max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    b = generate(locked, ids, mask, max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0,
                 lockstep=True)
    assert len(free.calls) == 4 and len(locked.calls) == 10
    assert torch.equal(b.completion_ids[:, :4], a.completion_ids) and bool((b.completion_ids[:, 4:] == PAD).all())
    assert torch.equal(b.completion_mask.sum(dim=1), a.completion_mask.sum(dim=1))
    assert torch.equal(b.logprobs[:, :4], a.logprobs) and torch.equal(b.finished, a.finished)


def test_cache_keyword_follows_forward_signature():
    model = CacheKwargLM(chain_table(CHAIN))
    generate(model, *left_pad([[1]], PAD), max_new_tokens=5, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    assert [c.cache for c in model.calls] == [None, ("cache", 1), ("cache", 2), ("cache", 3)]


def test_runs_to_max_new_tokens_without_eos():
    model = TableLM(chain_table(CHAIN))
    r = generate(model, *left_pad([[6], [1]], PAD), max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD,
                 temperature=0.0)
    assert r.completion_ids.tolist()[0] == [7, 6, 7, 6, 7, 6]
    assert r.completion_mask.tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert r.finished.tolist() == [False, True]
    assert len(model.calls) == 6  # no forward for a token that would never be sampled


def test_multiple_eos_ids_and_pad_equal_to_eos():
    model = TableLM(chain_table(CHAIN))
    r = generate(model, *left_pad([[1], [3]], PAD), max_new_tokens=10, eos_token_id=[EOS, 5], pad_token_id=EOS,
                 temperature=0.0)
    # 1 -> 3 -> 4 -> 5(stop); 3 -> 4 -> 5(stop)
    assert r.completion_ids.tolist() == [[3, 4, 5], [4, 5, EOS]]
    assert r.completion_mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_restores_modes_and_tracks_no_gradients():
    model = TableLM(chain_table(CHAIN))
    model.train()
    frozen = nn.Linear(1, 1).eval()
    model.frozen = frozen
    r = generate(model, *left_pad([[5]], PAD), max_new_tokens=3, eos_token_id=EOS, pad_token_id=PAD)
    assert all(not c.training and c.inference for c in model.calls)
    assert model.training and not frozen.training  # each submodule gets its own mode back
    # outputs are ordinary tensors, usable later inside autograd (e.g. as embedding indices)
    assert not any(t.is_inference() for t in (r.sequences, r.attention_mask, r.logprobs, r.finished))


NUCLEUS_PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def _draw(logits: torch.Tensor, n: int, *, temperature=1.0, top_p=1.0, seed=0):
    """n samples from one row of logits via sample_next on an (n, V) batch."""
    g = torch.Generator().manual_seed(seed)
    return sample_next(logits.expand(n, -1), temperature=temperature, top_p=top_p, generator=g)


@pytest.mark.parametrize(
    "temperature, top_p, kept",
    [
        (1.0, 0.8, {0, 1}),  # 0.5 + 0.3 reaches 0.8 exactly
        (1.0, 0.81, {0, 1, 2}),
        (1.0, 1e-9, {0}),  # the top token always survives
        (0.5, 0.9, {0, 1}),  # temperature sharpens first: probs ~ [0.685, 0.247, 0.062, 0.007]
        (1.0, 1.0, {0, 1, 2, 3}),
    ],
)
def test_top_p_keeps_exactly_the_nucleus(temperature, top_p, kept):
    logits = NUCLEUS_PROBS.log()
    tokens, _ = _draw(logits, 20_000, temperature=temperature, top_p=top_p)
    assert set(tokens.tolist()) == kept


def test_top_p_samples_renormalised_nucleus():
    tokens, _ = _draw(NUCLEUS_PROBS.log(), 20_000, top_p=0.8)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.015)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_frequencies_match_tempered_softmax(temperature):
    logits = torch.tensor([1.0, -0.5, 2.0, 0.0, -3.0, 1.5])
    tokens, _ = _draw(logits, 40_000, temperature=temperature)
    freq = torch.bincount(tokens, minlength=6).float() / len(tokens)
    assert torch.allclose(freq, torch.softmax(logits / temperature, dim=-1), atol=0.01)


@pytest.mark.parametrize("temperature, top_p", [(0.7, 1.0), (1.3, 0.6), (0.0, 1.0)])
def test_logprobs_are_the_untruncated_tempered_distribution(temperature, top_p):
    logits = torch.randn(64, 11, generator=torch.Generator().manual_seed(3)) * 2
    tokens, logprobs = sample_next(logits, temperature=temperature, top_p=top_p,
                                   generator=torch.Generator().manual_seed(0))
    scaled = logits / temperature if temperature > 0 else logits
    assert logprobs.dtype == torch.float32
    assert torch.equal(logprobs, torch.log_softmax(scaled, dim=-1).gather(1, tokens[:, None]).squeeze(1))
    if temperature == 0:
        assert torch.equal(tokens, logits.argmax(-1))


def test_same_seed_same_rollout():
    table = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    ids, mask = left_pad([[1, 2, 3], [4], [5, 6]] * 4, PAD)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return generate(TableLM(table), ids, mask, max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD,
                        temperature=1.0, top_p=0.9, generator=g)

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.sequences, c.sequences)


def test_concatenated_chunks_keep_every_row_and_its_masks():
    """GRPO samples in chunks (one seeded stream each) and trains on their concatenation."""
    table = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
    kw = dict(max_new_tokens=6, eos_token_id=EOS, pad_token_id=PAD, temperature=1.0,
              generator=torch.Generator().manual_seed(3))
    a = generate(TableLM(table), *left_pad([[1, 2, 3], [4]], PAD), **kw)
    b = generate(TableLM(table), *left_pad([[5]], PAD), **kw)
    both = concat_rollouts([a, b], PAD)
    P, C = a.prompt_ids.shape[1], max(a.completion_ids.shape[1], b.completion_ids.shape[1])
    assert both.sequences.shape == (3, P + C)
    for row, (part, i) in enumerate([(a, 0), (a, 1), (b, 0)]):
        n = int(part.completion_mask[i].sum())
        assert both.completion_ids[row, :n].tolist() == part.completion_ids[i, :n].tolist()
        assert torch.equal(both.logprobs[row, :n], part.logprobs[i, :n])
        assert both.completion_mask[row].sum() == n and both.logprobs[row, n:].abs().sum() == 0
        real = part.prompt_ids[i][part.prompt_mask[i].bool()]
        assert torch.equal(both.prompt_ids[row][both.prompt_mask[row].bool()], real)
        assert both.finished[row] == part.finished[i]


def test_decode_completions_uses_masked_tokens_only():
    class Tokenizer:
        eos_token_id, pad_token_id = EOS, PAD

        def decode(self, ids, skip_special_tokens=False):
            # Tags such as <think> may be "special" in some transformers releases: keep them.
            assert not skip_special_tokens
            return " ".join(map(str, ids))

    model = TableLM(chain_table(CHAIN))
    r = generate(model, *left_pad([[1], [4]], PAD), max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD,
                 temperature=0.0)
    assert decode_completions(Tokenizer(), r) == ["3 4 5", "5"]  # EOS and padding dropped


# --- a real tiny Qwen2: KV cache, positions and padding against full forwards -----------------


@pytest.fixture(scope="module")
def qwen():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=50, max_position_embeddings=128)
    return Qwen2ForCausalLM(config).eval()


QWEN_PROMPTS = [[11, 12, 13, 14, 15, 16, 17], [21, 22, 23], [31, 32, 33, 34, 35], [41]]


@pytest.mark.parametrize("temperature, top_p", [(0.8, 1.0), (1.0, 0.9), (0.0, 1.0)])
def test_cached_logprobs_match_one_full_forward(qwen, temperature, top_p):
    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    # an EOS the random model actually emits makes rows stop at different steps
    eos = [7, 19, 23, 42]
    r = generate(qwen, ids, mask, max_new_tokens=16, eos_token_id=eos, pad_token_id=PAD,
                 temperature=temperature, top_p=top_p, generator=torch.Generator().manual_seed(0))
    recomputed = completion_logprobs(qwen, r.sequences, r.attention_mask, ids.shape[1], temperature=temperature)
    assert recomputed.shape == r.logprobs.shape
    assert torch.allclose(recomputed, r.logprobs, atol=1e-5, rtol=0)
    assert (recomputed[r.completion_mask == 0] == 0).all()


def test_completion_logprobs_has_gradients(qwen):
    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    r = generate(qwen, ids, mask, max_new_tokens=4, eos_token_id=EOS, pad_token_id=PAD,
                 generator=torch.Generator().manual_seed(0))
    qwen.zero_grad()
    completion_logprobs(qwen, r.sequences, r.attention_mask, ids.shape[1]).sum().backward()
    assert qwen.lm_head.weight.grad is not None and qwen.lm_head.weight.grad.abs().sum() > 0
    qwen.zero_grad()


def test_completion_entropy_is_that_of_the_tempered_distribution(qwen):
    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    r = generate(qwen, ids, mask, max_new_tokens=6, eos_token_id=[7, 19], pad_token_id=PAD,
                 generator=torch.Generator().manual_seed(1))
    P, T = ids.shape[1], 0.7
    logp, entropy = completion_logprobs(qwen, r.sequences, r.attention_mask, P, T, with_entropy=True)
    assert torch.equal(logp, completion_logprobs(qwen, r.sequences, r.attention_mask, P, T))
    with torch.no_grad():
        positions = (r.attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = qwen(input_ids=r.sequences, attention_mask=r.attention_mask, position_ids=positions).logits
        dist = torch.log_softmax(logits[:, P - 1 : -1] / T, dim=-1)
        expected = -(dist.exp() * dist).sum(-1) * r.completion_mask
    assert torch.allclose(entropy, expected, atol=1e-5, rtol=0)
    assert not entropy.requires_grad


def test_greedy_is_padding_invariant(qwen):
    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    kw = dict(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    batched = generate(qwen, ids, mask, **kw)
    for row, prompt in enumerate(QWEN_PROMPTS):
        alone = generate(qwen, *left_pad([prompt], PAD), **kw)
        n = int(alone.completion_mask.sum())
        assert batched.completion_ids[row, :n].tolist() == alone.completion_ids[0, :n].tolist()
        assert torch.allclose(batched.logprobs[row, :n], alone.logprobs[0, :n], atol=1e-5, rtol=0)


def test_preallocated_cache_matches_stock_dynamic_cache(qwen, monkeypatch):
    from transformers.cache_utils import DynamicCache

    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    kw = dict(max_new_tokens=10, eos_token_id=EOS, pad_token_id=PAD, temperature=0.0)
    fast = generate(qwen, ids, mask, **kw)
    cache = rollout_module._preallocated_cache(qwen, 8)
    assert all(type(layer).__name__ == "GrowingLayer" for layer in cache.layers)
    monkeypatch.setattr(rollout_module, "_preallocated_cache", lambda m, capacity: DynamicCache(config=m.config))
    stock = generate(qwen, ids, mask, **kw)
    assert torch.equal(fast.completion_ids, stock.completion_ids)
    assert torch.allclose(fast.logprobs, stock.logprobs, atol=1e-6, rtol=0)


def _rollout_for_chunks(qwen, seed=2):
    ids, mask = left_pad(QWEN_PROMPTS, PAD)
    r = generate(qwen, ids, mask, max_new_tokens=9, eos_token_id=[7, 19], pad_token_id=PAD,
                 generator=torch.Generator().manual_seed(seed))
    return r, ids.shape[1]


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("rows", [1, 5, 1000])
def test_chunked_head_matches_one_shot_values_and_gradients(qwen, temperature, rows):
    r, P = _rollout_for_chunks(qwen)
    weights = torch.randn(r.completion_mask.shape, generator=torch.Generator().manual_seed(3))

    def run(chunk_rows):
        qwen.zero_grad()
        logp, entropy = completion_logprobs(qwen, r.sequences, r.attention_mask, P, temperature,
                                            with_entropy=True, chunk_rows=chunk_rows)
        (logp * weights).sum().backward()
        grads = {n: p.grad.clone() for n, p in qwen.named_parameters()}
        qwen.zero_grad()
        return logp.detach(), entropy, grads

    logp0, ent0, grads0 = run(0)
    logp1, ent1, grads1 = run(rows)
    assert torch.allclose(logp1, logp0, atol=1e-6, rtol=0)
    assert torch.allclose(ent1, ent0, atol=1e-5, rtol=0)
    assert not ent1.requires_grad
    assert (logp1[r.completion_mask == 0] == 0).all() and (ent1[r.completion_mask == 0] == 0).all()
    for name, g in grads0.items():
        assert torch.allclose(grads1[name], g, atol=1e-6, rtol=1e-5), name
    # The head override is gone afterwards: a plain forward returns real logits again.
    assert "forward" not in qwen.lm_head.__dict__
    assert qwen(input_ids=r.sequences).logits.shape[-1] == qwen.config.vocab_size


def test_chunk_default_is_one_shot_on_cpu_and_env_overrides(qwen, monkeypatch):
    monkeypatch.delenv(rollout_module.LOGPROB_CHUNK_ENV, raising=False)
    cpu = torch.device("cpu")
    assert rollout_module._head_chunk_rows(None, cpu, qwen.lm_head) == 0
    assert rollout_module._head_chunk_rows(None, torch.device("cuda"), qwen.lm_head) == (1 << 28) // 50
    monkeypatch.setenv(rollout_module.LOGPROB_CHUNK_ENV, "7")
    assert rollout_module._head_chunk_rows(None, cpu, qwen.lm_head) == 7
    assert rollout_module._head_chunk_rows(0, cpu, qwen.lm_head) == 0
    assert rollout_module._head_chunk_rows(7, cpu, None) == 0  # no fusable head: always one-shot
    # With the env set, the default call takes the chunked path and agrees with the one-shot one.
    r, P = _rollout_for_chunks(qwen)
    with torch.no_grad():
        assert torch.allclose(completion_logprobs(qwen, r.sequences, r.attention_mask, P),
                              completion_logprobs(qwen, r.sequences, r.attention_mask, P, chunk_rows=0),
                              atol=1e-6, rtol=0)


def test_chunked_head_falls_back_for_models_without_linear_head():
    model = TableLM(chain_table(CHAIN))
    seqs = torch.tensor([[1, 3, 4, 5], [6, 7, 6, 7]])
    mask = torch.ones_like(seqs)
    assert rollout_module._fusable_head(model) is None
    assert torch.equal(completion_logprobs(model, seqs, mask, 2, chunk_rows=3),
                       completion_logprobs(model, seqs, mask, 2, chunk_rows=0))


def test_a_budget_cut_is_what_a_shorter_run_samples(tiny_base):
    """model/evaluate.py scores a thinking budget b by cutting each sample at b tokens: that
    must be exactly the completion a run with max_new_tokens = b draws from the same seed."""
    from model import factory
    from model.evaluate import Protocol, cut, rollouts

    tokenizer, model, _ = factory.load_pinned(str(tiny_base), "")
    rows = [{"prompt": f"Compute {a} + {b}"} for a, b in ((12, 34), (250, 71), (9, 9))]

    def texts(max_new_tokens: int, budget: int | None = None) -> list[str]:
        protocol = Protocol(k=3, max_new_tokens=max_new_tokens, batch_size=4, seed=5)
        out = []
        for rollout, stop_ids in rollouts(model, tokenizer, rows, n=3, temperature=1.0, protocol=protocol):
            out += decode_completions(tokenizer, cut(rollout, budget) if budget else rollout, stop_ids)
        return out

    full = texts(24)
    assert texts(24, 7) == texts(7) != full


def test_budget_forcing_closes_the_thinking_of_samples_still_thinking_at_the_budget(tiny_base):
    """model/evaluate.py ``force_answers`` (s1's budget forcing): a sample whose thinking is
    closed within the budget keeps its answer; one still thinking is cut there, its thinking
    closed, the answer asked for, and the model writes it, the same way on every call."""
    from data.formatting import r1_zero_prompt
    from model import factory
    from model.evaluate import FORCE_ANSWER, Protocol, cut, force_answers
    from model.rollout import Rollout, stop_token_ids

    tokenizer, model, _ = factory.load_pinned(str(tiny_base), "")
    stop_ids = stop_token_ids(model, tokenizer)
    prompt = tokenizer(r1_zero_prompt("Compute 1 + 2"), add_special_tokens=False)["input_ids"]
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    done = encode("<think> 1 + 2 = 3 </think> <answer> 3 </answer>") + [tokenizer.eos_token_id]
    thinking = encode("<think> 1 + 2 = 3 wait , 1 + 2 = 3 so the sum is 3 and 3 is the sum of 1 and 2")
    width = max(len(done), len(thinking))
    ids = torch.full((2, width), tokenizer.pad_token_id)
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, tokens in enumerate((done, thinking)):
        ids[row, :len(tokens)], mask[row, :len(tokens)] = torch.tensor(tokens), 1
    rollout = Rollout(prompt_ids=torch.tensor([prompt, prompt]),
                      prompt_mask=torch.ones(2, len(prompt), dtype=torch.long), completion_ids=ids, completion_mask=mask, logprobs=torch.zeros(2, width),
                      finished=torch.tensor([True, False]))
    full = decode_completions(tokenizer, rollout, stop_ids)
    closed = len(encode("<think> 1 + 2 = 3 </think>")) + 1  # the first sample's thinking ends before this budget
    assert closed < len(thinking)
    for output in ("tags", "readable"):
        protocol = Protocol(k=1, max_new_tokens=width, seed=3, output=output)
        texts = force_answers(model, tokenizer, rollout, stop_ids, closed, protocol)
        assert texts[0] == full[0]  # closed its thinking within the budget: its own answer
        head = decode_completions(tokenizer, cut(rollout, closed), stop_ids)[1] + FORCE_ANSWER[output]
        assert texts[1].startswith(head) and texts[1] != full[1]
        assert force_answers(model, tokenizer, rollout, stop_ids, closed, protocol) == texts
        # At a budget past every sample, one that never finished is still forced to answer.
        late = force_answers(model, tokenizer, rollout, stop_ids, width, protocol)
        assert late[0] == full[0] and late[1].startswith(full[1] + FORCE_ANSWER[output])


def test_finished_rows_leave_the_decode_batch_without_changing_any_sample(tiny_base, monkeypatch):
    """model/rollout.py ``_decode`` drops finished rows from the model's batch (and the KV
    cache); every row still draws its own random numbers, so the tokens are those of decoding
    the whole batch to the end, and the log-probabilities too up to float rounding (a matrix
    product of fewer rows may round differently)."""
    from model import factory

    tokenizer, model, _ = factory.load_pinned(str(tiny_base), "")
    prompts = [tokenizer(f"Compute {a} + {b}", add_special_tokens=False)["input_ids"] for a, b in
               ((12, 34), (250, 71), (9, 9), (4, 5), (70, 3), (1, 1), (88, 12), (5, 50))]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    calls = []
    forward = model.forward

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counted)

    def run(share: float):
        monkeypatch.setattr(rollout_module, "_COMPACT_SHARE", share)
        calls.clear()
        g = torch.Generator().manual_seed(7)
        # Frequent tokens as EOS, so rows end at many different steps.
        r = generate(model, ids, mask, max_new_tokens=24, eos_token_id=list(range(3, 60)),
                     pad_token_id=tokenizer.pad_token_id, temperature=1.0, top_p=0.9, generator=g)
        return r, list(calls)

    whole, whole_calls = run(0.0)  # never compacts
    compact, compact_calls = run(0.75)
    assert set(whole_calls) == {8} and min(compact_calls) < 8  # rows left the batch
    assert len(set(whole.completion_mask.sum(1).tolist())) > 3  # rows ended at many different steps
    for field in ("completion_ids", "completion_mask", "finished"):
        assert torch.equal(getattr(whole, field), getattr(compact, field)), field
    torch.testing.assert_close(whole.logprobs, compact.logprobs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_packed_completion_logprobs_match_the_padded_ones(family):
    """``completion_logprobs(..., pack=True)`` runs the rows' real tokens packed together
    (model/packing.py): the same log-probabilities, entropies and gradients as the padded
    batch, in the same (B, C) layout."""
    from model import factory

    tok = factory.train_tokenizer(["Compute 12 + 34 <think> 12 + 34 = 46 </think> <answer> 46 </answer>"] * 20,
                                  vocab_size=120)
    model = factory.build_tiny_model(tok, family=family, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                     intermediate_size=64, seed=0)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 100, (n,), generator=g).tolist() for n in (5, 9, 7, 3)]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    completions = torch.randint(3, 100, (4, 11), generator=g)
    completion_mask = (torch.arange(11)[None] < torch.tensor([[11], [2], [6], [1]])).long()
    seqs = torch.cat([ids, completions.masked_fill(completion_mask == 0, tok.pad_token_id)], dim=1)
    attn = torch.cat([mask, completion_mask], dim=1)

    def run(pack: bool):
        model.zero_grad()
        logp, entropy = completion_logprobs(model, seqs, attn, ids.shape[1], 0.7, with_entropy=True,
                                            chunk_rows=0, pack=pack)
        (logp * completion_mask).sum().backward()
        return logp.detach(), entropy, [p.grad.clone() for p in model.parameters()]

    padded, packed = run(False), run(True)
    torch.testing.assert_close(packed[0], padded[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(packed[1], padded[1], rtol=0, atol=1e-5)
    for a, b in zip(packed[2], padded[2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert (packed[0][completion_mask == 0] == 0).all()

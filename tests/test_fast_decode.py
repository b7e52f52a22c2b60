"""Static-cache decoder (model/fast_decode.py) against the eager rollout loop, on CPU.

The decoder re-expresses the model's arithmetic over fixed-shape buffers; on CPU in float32
(no CUDA graphs) it must reproduce the eager path's tokens exactly and its log-probabilities to
float32 round-off, with left padding, GQA, per-row EOS stopping and seeded sampling. The CUDA
graph replay is the same `_step` captured; it is checked on the GPU by benchmarks/decode.py.
"""

import functools

import pytest
import torch

from model import fast_decode
from model.rollout import _decode, _eval_mode, left_pad, sample_next

PAD = 0


def tiny(family: str, kv_heads: int):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[family]
    config = config_cls(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=kv_heads, intermediate_size=48, max_position_embeddings=128,
                        tie_word_embeddings=True, pad_token_id=PAD)
    torch.manual_seed(0)
    return model_cls(config).eval()


def prompts():
    rows = [[5, 6, 7, 8, 9], [11], [12, 13, 14], [3, 3, 3, 3, 3, 3, 3]]
    return left_pad(rows, PAD)


def both(model, ids, mask, n, eos, temperature=0.0, seed=None):
    eos_t = torch.tensor(eos).reshape(-1)

    def sampler():
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return functools.partial(sample_next, temperature=temperature, top_p=1.0, generator=gen)

    with _eval_mode(model), torch.inference_mode():
        eager = _decode(model, ids, mask, n, eos_t, PAD, sampler())
        fast = fast_decode.decode(model, ids, mask, n, eos_t, PAD, sampler(), use_graphs=False)
    fast_decode.clear()
    return eager, fast


def assert_same(eager, fast):
    steps, tokens, logprobs, attn, finished = eager
    f_steps, f_tokens, f_logprobs, f_attn, f_finished = fast
    P = attn.shape[1] - tokens.shape[1]
    assert f_steps == steps
    assert torch.equal(f_tokens[:, :steps], tokens[:, :steps])
    assert torch.equal(f_attn[:, : P + steps], attn[:, : P + steps])
    assert torch.equal(f_finished, finished)
    torch.testing.assert_close(f_logprobs[:, :steps], logprobs[:, :steps], atol=2e-5, rtol=0)


@pytest.mark.parametrize("family,kv_heads", [("qwen2", 4), ("qwen2", 2), ("llama", 2)])
def test_greedy_matches_eager_without_eos(family, kv_heads):
    model = tiny(family, kv_heads)
    ids, mask = prompts()
    eager, fast = both(model, ids, mask, n=40, eos=63)
    assert_same(eager, fast)


def test_per_row_eos_stops_like_eager():
    model = tiny("qwen2", 2)
    ids, mask = prompts()
    (_, tokens, *_), _ = both(model, ids, mask, n=30, eos=63)
    eos = int(tokens[1, 4])  # a token row 1 produces early: it stops there, others when they hit it
    eager, fast = both(model, ids, mask, n=30, eos=eos)
    assert eager[4][1]  # row 1 finished
    assert_same(eager, fast)


def test_seeded_sampling_matches_eager():
    model = tiny("qwen2", 2)
    ids, mask = prompts()
    eager, fast = both(model, ids, mask, n=25, eos=[7, 9], temperature=1.0, seed=3)
    assert_same(eager, fast)


def test_prompt_width_is_aligned_and_cached():
    model = tiny("qwen2", 2)
    ids, mask = prompts()
    eos = torch.tensor([63])
    sample = functools.partial(sample_next, temperature=0.0, top_p=1.0)
    with torch.inference_mode():
        fast_decode.decode(model, ids, mask, 8, eos, PAD, sample, use_graphs=False)
        (decoder,) = fast_decode._decoders.values()
        assert decoder.P % fast_decode._PROMPT_ALIGN == 0 and decoder.capacity % fast_decode._BUCKET == 0
        shorter_ids, shorter_mask = ids[:, 1:], mask[:, 1:]  # same aligned width: decoder reused
        fast_decode.decode(model, shorter_ids, shorter_mask, 8, eos, PAD, sample, use_graphs=False)
        assert list(fast_decode._decoders.values()) == [decoder]
    fast_decode.clear()


def test_supports_only_cuda_plain_decoders():
    model = tiny("qwen2", 2)
    assert not fast_decode.supports(model, torch.device("cpu"), None)
    assert fast_decode._supported_architecture(model)
    assert not fast_decode._supported_architecture(torch.nn.Linear(2, 2))


def test_gumbel_sample_draws_the_tempered_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(20000, 1)
    tokens, logprobs = fast_decode._gumbel_sample(logits, torch.rand(logits.shape), 0.5)
    expected = torch.softmax(logits[0] / 0.5, dim=-1)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
    torch.testing.assert_close(logprobs, expected.log()[tokens])


def test_decoder_is_rebuilt_when_parameter_storage_moves():
    model = tiny("qwen2", 2)
    ids, mask = prompts()
    eos = torch.tensor([63])
    sample = functools.partial(sample_next, temperature=0.0, top_p=1.0)
    with torch.inference_mode():
        fast_decode.decode(model, ids, mask, 4, eos, PAD, sample, use_graphs=False)
        (first,) = fast_decode._decoders.values()
    with torch.no_grad():
        model.model.norm.weight.data = model.model.norm.weight.data.clone()  # as a wrapper re-pointing .data would
    with torch.inference_mode():
        fast_decode.decode(model, ids, mask, 4, eos, PAD, sample, use_graphs=False)
        (second,) = fast_decode._decoders.values()
    assert second is not first
    fast_decode.clear()

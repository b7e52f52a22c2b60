"""model/packing.py: where packed sequences go (the trainers' equivalence with padded batches is
tested in test_trainers.py and test_rollout.py)."""

from __future__ import annotations

import random

import pytest

from model import packing


def test_layout_places_every_sequence_whole_without_overlap():
    rng = random.Random(3)
    lengths = [rng.randint(1, 140) for _ in range(64)]
    width, place = packing.layout(lengths)
    assert width == max(lengths)  # as wide as the padded batch, never wider
    cells = set()
    for n, (row, col) in zip(lengths, place):
        assert col + n <= width  # whole, inside its row
        span = {(row, c) for c in range(col, col + n)}
        assert not span & cells
        cells |= span
    rows = 1 + max(r for r, _ in place)
    assert rows < 0.75 * len(lengths)  # far fewer rows than padding
    assert packing.layout(lengths) == (width, place)  # deterministic


def test_pack_restarts_positions_at_each_sequence():
    ids, positions, place = packing.pack([[5, 6, 7], [8], [9, 9]], pad_id=0)
    assert ids.shape == (2, 3) and place[0] == (0, 0)
    for seq, (row, col) in zip([[5, 6, 7], [8], [9, 9]], place):
        assert ids[row, col:col + len(seq)].tolist() == seq
        assert positions[row, col:col + len(seq)].tolist() == list(range(len(seq)))


def test_layout_refuses_empty_sequences():
    with pytest.raises(ValueError, match="at least one token"):
        packing.layout([3, 0])
    with pytest.raises(ValueError, match="at least one token"):
        packing.layout([])


def test_moe_and_flash_attention_models_are_not_packed():
    """An MoE router's balancing loss would count a packed row's padding, and flash-attention
    reads positions as packed only at batch size 1: both get padded batches."""
    from model import factory

    tok = factory.train_tokenizer(["Compute 1 + 2 <think> 1 + 2 = 3 </think> <answer> 3 </answer>"] * 20,
                                  vocab_size=120)
    size = dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=16)
    dense = factory.build_tiny_model(tok, **size)
    moe = factory.build_tiny_model(tok, architecture="moe", num_experts=4, num_experts_per_tok=2, **size)
    assert packing.supported(dense) and not packing.supported(moe)
    dense.config._attn_implementation = "flash_attention_2"
    assert not packing.supported(dense)

"""Sequence packing: whole sequences of mixed lengths share rows of one batch, padding-free.

Training forwards over padded batches pay for the longest sequence in every row: a base-corpus
batch of 64 rows is 75 tokens a row on average and 138 padded; an r1_zero step's completions
are 40 tokens on average and up to 128. Packed, several sequences share a row, each with
position ids that restart at 0, and the model is called without an attention mask and without
a cache: transformers then reads the sequence boundaries from the positions
(``masking_utils.find_packed_sequence_indices``, for SDPA and eager attention), so each token
attends only to its own sequence, and the outputs are the padded batch's up to float rounding.
Not every model can take a packed batch (:func:`supported`): flash-attention reads positions as
packed only at batch size 1 (transformers ``_is_packed_sequence``), and an MoE router's
balancing loss and expert load would count the padding that ends a row (no mask reaches it);
those models get padded batches. This is TRL's ``packing=True`` with its best-fit-decreasing
strategy and ``padding_free`` (TRL docs, "Packing"); the SFT trainer packs its examples
(model/sft.py ``pack``) and the GRPO trainer its rollouts (model/rollout.py
``completion_logprobs`` with ``pack=True``).
"""

from __future__ import annotations

import torch


def supported(model) -> bool:
    """Whether ``model`` (or the module a DeepSpeed engine wraps) computes a packed batch as its
    padded one: SDPA or eager attention, and no Mixture-of-Experts router (module doc)."""
    from model.moe import is_moe

    inner = getattr(model, "module", model)
    attention = str(getattr(getattr(inner, "config", None), "_attn_implementation", "sdpa") or "sdpa")
    return "flash" not in attention and not is_moe(inner)


def layout(lengths: list[int]) -> tuple[int, list[tuple[int, int]]]:
    """Where each sequence goes: ``(width, [(row, column) per sequence])``.

    Best-fit decreasing: longest first (ties by index), each sequence goes to the fullest row
    it fits. Rows are as wide as the longest sequence, as the padded batch's are, so packing
    never costs more than padding: a wider row would let more sequences share it, but
    attention's cost grows with the row's width, and where lengths are even (readable traces,
    140 columns for 115 tokens) rows twice as wide made GRPO's passes 25% slower than padding
    (benchmarks/cpu_steps.py). Deterministic. Raises ValueError for no sequences or a length
    below 1.
    """
    if not lengths or min(lengths) < 1:
        raise ValueError(f"packing needs sequences of at least one token, got lengths {lengths[:8]}")
    width = max(lengths)
    room: list[int] = []
    place: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [r for r in range(len(room)) if room[r] >= lengths[i]]
        row = min(fits, key=lambda r: (room[r], r)) if fits else len(room)
        if not fits:
            room.append(width)
        place[i] = (row, width - room[row])
        room[row] -= lengths[i]
    return width, place


def pack(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """``(input_ids, position_ids, placements)`` of ``sequences`` packed by :func:`layout`:
    (R, width) long tensors, positions restarting at 0 at each sequence and at the padding that
    ends a row (a sequence of its own, which attends to nothing else), and each sequence's
    ``(row, column)``. Call the model with ``position_ids``, no attention mask and
    ``use_cache=False``."""
    width, place = layout([len(s) for s in sequences])
    rows = 1 + max(r for r, _ in place)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.arange(width).repeat(rows, 1)  # the padding after the last sequence of a row
    ends = [0] * rows
    for seq, (r, c) in zip(sequences, place):
        ids[r, c:c + len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        positions[r, c:c + len(seq)] = torch.arange(len(seq))
        ends[r] = max(ends[r], c + len(seq))
    for r, end in enumerate(ends):
        positions[r, end:] = torch.arange(width - end)
    return ids, positions, place

"""Shared pieces of the GPU benchmarks: model shapes, device ceilings, timing, tables.

The ceilings follow the device tool's METHOD.md: a large device-to-device copy (bytes read +
written) and an 8192^3 bf16 matrix product on random data, each the median of repeated timed
runs after warm-up, measured in the same process as the benchmark that uses them.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import torch

# Qwen2 shapes used by issue 5 (random init; vocab 32000 is a GPT-2-sized BPE).
SHAPES = {
    "124m": dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, intermediate_size=3072, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, tie_word_embeddings=True),
}
H200_PEAK_BF16 = 989e12  # dense bf16 FLOP/s, vendor datasheet (H100/H200 SXM)


def build_model(shape: str, *, dtype=torch.bfloat16, device="cuda", max_positions: int = 4096, seed: int = 0):
    """A random-init Qwen2ForCausalLM of the named shape, SDPA attention."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=max_positions, bos_token_id=None,
                         eos_token_id=1, pad_token_id=0, attn_implementation="sdpa")
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    return model.to(dtype)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def time_cuda(fn, *, warmup: int = 3, repeat: int = 10) -> float:
    """Median seconds of `fn()` over `repeat` runs, timed with CUDA events after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def ceilings() -> dict[str, float]:
    """Measured copy bandwidth (bytes/s, read + write) and bf16 matmul rate (FLOP/s)."""
    n = 1 << 30  # 2 GiB of bf16 per buffer, far past the 60 MB L2
    src = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    copy_s = time_cuda(lambda: dst.copy_(src), repeat=20)
    del src, dst
    m = 8192
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    mm_s = time_cuda(lambda: a @ b, repeat=20)
    return {"copy_bytes_per_s": 2 * n * 2 / copy_s, "bf16_flop_per_s": 2 * m**3 / mm_s}


def out_dir() -> Path:
    path = Path(os.environ.get("OUT", "bench_out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(name: str, payload: dict) -> None:
    (out_dir() / name).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-markdown table of `rows` restricted to `columns`."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def device_line() -> str:
    import transformers

    return (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | transformers {transformers.__version__}")

"""Models and tokenizers: a tiny decoder built from a config, or any causal LM by path/hub id.

The embedded default trains a byte-level BPE tokenizer on the synthetic corpus
and builds a ~1M-parameter Qwen2 (or Llama) from a ``transformers`` config.
Everything is saved with ``save_pretrained`` (safetensors), so ``AutoModelForCausalLM``
and ``AutoTokenizer`` load it like any hub model.

Tokenizer choices, for the tiny default only:
- digits are always single tokens (arithmetic must see each digit);
- other text is *not* split at spaces before BPE (SentencePiece's
  ``split_by_whitespace=false``), so frequent phrases - above all the fixed
  R1-Zero template - merge into a few tokens and a small model's compute goes
  to the reasoning rather than to re-reading boilerplate;
- ``<think> </think> <answer> </answer>`` are single, non-special tokens, so
  decoding keeps them and the format reward sees them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from data.formatting import R1_ZERO_TEMPLATE, THINK_TAGS

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# The R1-Zero prompt as a chat template, so `apply_chat_template` renders exactly
# what the stages feed the model; an assistant turn is " " + content + EOS.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    + R1_ZERO_TEMPLATE.replace("{prompt}", "{{ message['content'] | trim }}")
    + "{%- elif message['role'] == 'assistant' -%}"
    "{{ ' ' + message['content'] | trim + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, max_length: int = 512):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (see module doc)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [EOS_TOKEN, PAD_TOKEN]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials + list(THINK_TAGS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        model_max_length=max_length, chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False,
    )
    wrapped.add_tokens(list(THINK_TAGS))  # non-special: kept when decoding
    return wrapped


def build_tiny_model(
    tokenizer,
    *,
    family: str = "llama",
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    max_positions: int = 512,
    seed: int = 0,
):
    """A randomly initialised decoder of the Qwen2 or Llama family sized for CPU training."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    if family not in classes:
        raise ValueError(f"model family {family!r}: choose from {sorted(classes)}")
    config_cls, model_cls = classes[family]
    config = config_cls(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size, max_position_embeddings=max_positions,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    log.info("built %s with %.2fM parameters", family, sum(p.numel() for p in model.parameters()) / 1e6)
    return model


REFERENCE_FILE = "r1flow_reference.json"


def write_reference(folder: str | Path, name_or_path: str) -> None:
    """Record in ``folder`` that the model there is ``name_or_path`` (a base named, not trained)."""
    import json

    Path(folder, REFERENCE_FILE).write_text(json.dumps({"name_or_path": name_or_path}) + "\n")


def resolve(name_or_path: str | Path) -> str:
    """Follow a reference written by :func:`write_reference`; anything else as given.

    A missing local path (anything but a hub id ``owner/name``) is a FileNotFoundError here,
    rather than a confusing hub error later."""
    import json

    path = Path(name_or_path)
    ref = path / REFERENCE_FILE
    if ref.is_file():
        return json.loads(ref.read_text())["name_or_path"]
    text = str(name_or_path)
    if not path.exists() and (text.count("/") != 1 or text.startswith((".", "/", "~"))):
        raise FileNotFoundError(f"model {text!r}: no such folder (has the stage that writes it run?)")
    return text


def load_tokenizer(name_or_path: str | Path):
    """Any tokenizer by local path or hub id; guarantees a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | Path, *, dtype: str = "auto"):
    """Any causal LM by local path or hub id (hub ids need network; set HF_HUB_OFFLINE=0)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve(name_or_path), dtype=torch_dtype)
    if model.dtype != torch.float32 and not torch.cuda.is_available():
        model = model.float()  # CPU training in fp32
    return model


def save_pretrained(model, tokenizer, out_dir: str | Path) -> Path:
    """Save model (safetensors) and tokenizer into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def inference_device():
    """Where a model loaded to sample or score goes: this process's GPU when CUDA is there
    (``cuda:$LOCAL_RANK``, so each rank of a launched job uses its own), else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")

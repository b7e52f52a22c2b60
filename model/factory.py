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
from typing import Any, Iterable

from dataclasses import dataclass

from data.formatting import PROMPT_FORMATS, THINK_TAGS, frame_chat_template
from infra.config import knob

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# The R1-Zero prompt as a chat template, so `apply_chat_template` renders exactly
# what the stages feed the model; an assistant turn is " " + content + EOS.
CHAT_TEMPLATE = frame_chat_template("tags")


@dataclass
class ModelArgs:
    """Knobs of every stage that loads a model and renders prompts for it (a config mixin;
    call :meth:`check_model_args` in ``__post_init__``). The output format the prompt asks for
    is the stage's, not a knob: its config's class attribute ``OUTPUT`` (data/formatting.py)."""

    revision: str = knob("", "Hub ids only: the model revision (commit, tag or branch); empty = default "
                         "branch. The commit loaded is recorded as model_revision in the stage's metrics.")
    prompt_format: str = knob("r1_zero", "r1_zero: the paper's plain-text prompt (base models, the tiny "
                              "default) | chat: the model's chat template, the instruction in the user turn.")

    def check_model_args(self) -> None:
        """Raise ValueError for an unknown prompt_format."""
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format {self.prompt_format!r}: choose from {PROMPT_FORMATS}")


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


ARCHITECTURES = ("dense", "moe")


def build_tiny_model(
    tokenizer,
    *,
    family: str = "llama",
    architecture: str = "dense",
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    num_experts: int = 4,
    num_experts_per_tok: int = 2,
    router_aux_loss_coef: float = 0.01,
    max_positions: int = 512,
    seed: int = 0,
):
    """A randomly initialised decoder of the Qwen2 or Llama family sized for CPU training.

    ``architecture="moe"`` makes every MLP a Mixture of Experts, as in DeepSeek-V3 (the base of
    R1): transformers' Mixtral for the llama family, Qwen2-MoE (with its shared expert) for
    qwen2; ``num_experts`` experts of ``intermediate_size`` each, ``num_experts_per_tok`` routed
    per token, and the router's load-balancing loss weighted ``router_aux_loss_coef`` in
    training (model/moe.py). Raises ValueError for an unknown family or architecture.
    """
    import torch
    from transformers import (LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM)

    classes = {("dense", "qwen2"): (Qwen2Config, Qwen2ForCausalLM), ("dense", "llama"): (LlamaConfig, LlamaForCausalLM),
               ("moe", "qwen2"): (Qwen2MoeConfig, Qwen2MoeForCausalLM), ("moe", "llama"): (MixtralConfig, MixtralForCausalLM)}
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r}: choose from {ARCHITECTURES}")
    if (architecture, family) not in classes:
        raise ValueError(f"model family {family!r}: choose from llama, qwen2")
    if architecture == "moe" and not 1 <= num_experts_per_tok <= num_experts:
        raise ValueError(f"num_experts_per_tok must be in 1..num_experts ({num_experts}), got {num_experts_per_tok}")
    config_cls, model_cls = classes[(architecture, family)]
    experts = {}
    if architecture == "moe":
        experts = {"num_experts_per_tok": num_experts_per_tok, "router_aux_loss_coef": router_aux_loss_coef}
        experts |= ({"num_local_experts": num_experts} if family == "llama" else
                    {"num_experts": num_experts, "moe_intermediate_size": intermediate_size,
                     "shared_expert_intermediate_size": intermediate_size, "decoder_sparse_step": 1})
    config = config_cls(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size, max_position_embeddings=max_positions,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **experts,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    log.info("built %s %s with %.2fM parameters", architecture, family, sum(p.numel() for p in model.parameters()) / 1e6)
    return model


REFERENCE_FILE = "r1flow_reference.json"


def write_reference(folder: str | Path, name_or_path: str, revision: str = "") -> None:
    """Record in ``folder`` that the model there is ``name_or_path`` at ``revision`` (a base
    named, not trained); :func:`resolve` follows it, so later stages load the same commit."""
    import json

    ref = {"name_or_path": name_or_path, **({"revision": revision} if revision else {})}
    Path(folder, REFERENCE_FILE).write_text(json.dumps(ref) + "\n")


def resolve(name_or_path: str | Path) -> str:
    """Follow a reference written by :func:`write_reference`; anything else as given (see
    :func:`resolve_pinned`, which also returns the revision)."""
    return resolve_pinned(name_or_path)[0]


def resolve_pinned(name_or_path: str | Path, revision: str = "") -> tuple[str, str]:
    """``(name or path, revision)``, following a reference written by :func:`write_reference`
    (its revision wins over ``revision``); anything else as given.

    A missing local path (anything but a hub id ``owner/name``) is a FileNotFoundError here,
    rather than a confusing hub error later."""
    import json

    path = Path(name_or_path)
    ref = path / REFERENCE_FILE
    if ref.is_file():
        data = json.loads(ref.read_text())
        return data["name_or_path"], data.get("revision", "") or revision
    text = str(name_or_path)
    if not path.exists() and (text.count("/") != 1 or text.startswith((".", "/", "~"))):
        raise FileNotFoundError(f"model {text!r}: no such folder (has the stage that writes it run?)")
    return text, revision


def pretrained_source(name_or_path: str | Path, revision: str) -> tuple[str, dict]:
    """What ``from_pretrained`` gets: a local folder loads with ``local_files_only`` (never the
    hub, whatever HF_HUB_OFFLINE says); a hub id with its revision when one is named."""
    name, revision = resolve_pinned(name_or_path, revision)
    if Path(name).is_dir():
        return name, {"local_files_only": True}
    return name, {"revision": revision} if revision else {}


def pinned_revision(name_or_path: str | Path, revision: str = "") -> str:
    """The commit a hub id resolves to at ``revision`` (from the hub, or the local cache when
    offline); ``"local"`` for a local folder; the revision as named if it cannot be resolved."""
    from transformers.utils.hub import cached_file, extract_commit_hash

    name, kwargs = pretrained_source(name_or_path, revision)
    if kwargs.get("local_files_only"):
        return "local"
    try:
        path = cached_file(name, "config.json", **kwargs)
    except OSError as err:
        log.warning("could not resolve %s@%s to a commit: %s", name, revision or "main", err)
        return revision or "unresolved"
    return extract_commit_hash(path, None) or revision or "unresolved"


def load_tokenizer(name_or_path: str | Path, revision: str = ""):
    """Any tokenizer by local path or hub id (at ``revision``); guarantees a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    name, kwargs = pretrained_source(name_or_path, revision)
    tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str | Path, *, dtype: str = "auto", revision: str = ""):
    """Any causal LM by local path or hub id at ``revision`` (hub ids need the network or the
    local cache; HF_HUB_OFFLINE=1, set for tests, allows only the cache)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    name, kwargs = pretrained_source(name_or_path, revision)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, **kwargs)
    if model.dtype != torch.float32 and not torch.cuda.is_available():
        model = model.float()  # CPU training in fp32
    return model


def load_pinned(name_or_path: str | Path, revision: str = "") -> tuple[Any, Any, str]:
    """``(tokenizer, model, commit)``: a model pinned to the commit its revision resolves to now
    (:func:`pinned_revision`), so tokenizer and weights come from the same commit and the
    stage can record it (``model_revision`` in its metrics); ``"local"`` for a folder."""
    commit = pinned_revision(name_or_path, revision)
    pin = revision if commit in ("local", "unresolved") else commit
    return load_tokenizer(name_or_path, pin), load_model(name_or_path, revision=pin), commit


def save_pretrained(model, tokenizer, out_dir: str | Path) -> Path:
    """Save model (safetensors) and tokenizer into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


CAUSAL_LM, REWARD_MODEL = "causal_lm", "reward_model"


def model_kind(folder: str | Path) -> str | None:
    """``"causal_lm"`` or ``"reward_model"`` for an HF model folder (from the architectures in
    its config.json; a folder holding only a hub reference is a causal LM), None when
    ``folder`` holds no model."""
    import json

    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        archs = json.loads(config.read_text()).get("architectures") or []
        return REWARD_MODEL if any(a.endswith("ForSequenceClassification") for a in archs) else CAUSAL_LM
    return CAUSAL_LM if (folder / REFERENCE_FILE).is_file() else None


def inference_device():
    """Where a model loaded to sample or score goes: this process's GPU when CUDA is there
    (``cuda:$LOCAL_RANK``, so each rank of a launched job uses its own), else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")

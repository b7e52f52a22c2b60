"""Real models and real splits: a ChatML Qwen2 with two EOS ids on GSM8K, splits and decontamination.

The model is built offline (model/factory.py), saved with ``save_pretrained`` like a hub
checkpoint: a Qwen2 whose tokenizer has a ChatML chat template and whose generation config
stops on ``<|im_end|>`` and ``<|endoftext|>`` (the tokenizer's own EOS is only the latter, as
in Qwen2.5 base models). Its output head is rigged (not trained) so that each step stops with
probability about one half, on one EOS id or the other depending on the hidden state, so
rollouts end on both ids.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import run_cli, shared_data

IM_START, IM_END, EOT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _questions(split: str) -> list[str]:
    path = shared_data(f"gsm8k/{split}.jsonl")
    return [json.loads(line)["question"] for line in path.open()]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A saved tiny Qwen2 with a ChatML template and generation_config EOS [<|im_end|>, <|endoftext|>]."""
    from data.formatting import INSTRUCTIONS
    from model import factory

    texts = _questions("train")[:400] + list(INSTRUCTIONS.values())
    tok = factory.train_tokenizer(texts, vocab_size=700, max_length=2048)
    tok.add_tokens([IM_START, IM_END], special_tokens=True)
    tok.chat_template = CHATML
    model = factory.build_tiny_model(tok, family="qwen2", hidden_size=32, num_layers=2, num_heads=2,
                                     num_kv_heads=1, intermediate_size=64, max_positions=2048, seed=0)
    im_end, eot = tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(EOT)
    model.config.tie_word_embeddings = False
    head = torch.zeros_like(model.lm_head.weight)
    direction = torch.nn.functional.normalize(torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0)), dim=0)
    head[im_end], head[eot] = 8 * direction, -8 * direction  # logit ±8·(h·u): the sign picks which EOS
    model.lm_head.weight = torch.nn.Parameter(head)
    model.generation_config.eos_token_id = [im_end, eot]
    model.generation_config.pad_token_id = tok.pad_token_id
    path = factory.save_pretrained(model, tok, tmp_path_factory.mktemp("qwen_chat") / "model")
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == [im_end, eot]
    return path


def test_chat_prompt_goes_through_the_template_and_the_template_is_saved(chat_model, tmp_path):
    from data.formatting import INSTRUCTIONS, render_prompts
    from model import factory

    tok = factory.load_tokenizer(chat_model)
    (ids,) = render_prompts(tok, ["What is 2 + 3?"], prompt_format="chat", output="tags")
    text = tok.decode(ids, skip_special_tokens=False)
    assert text == f"{IM_START}user\nWhat is 2 + 3?\n\n{INSTRUCTIONS['tags']}{IM_END}\n{IM_START}assistant\n"
    factory.save_pretrained(factory.load_model(chat_model), tok, tmp_path / "again")
    assert factory.load_tokenizer(tmp_path / "again").chat_template == CHATML  # chat format keeps the model's own


def test_rollouts_stop_on_every_eos_id_of_the_generation_config(chat_model):
    from data.formatting import render_prompts
    from model import factory
    from model.rollout import decode_completions, generate, left_pad, stop_token_ids

    tok, model = factory.load_tokenizer(chat_model), factory.load_model(chat_model)
    stops = stop_token_ids(model, tok)
    assert stops == [tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(EOT)]
    ids = render_prompts(tok, _questions("train")[:8], prompt_format="chat")
    prompt_ids, mask = left_pad([i for i in ids for _ in range(4)], tok.pad_token_id)
    r = generate(model, prompt_ids, mask, max_new_tokens=24, eos_token_id=stops, pad_token_id=tok.pad_token_id,
                 temperature=1.0, generator=torch.Generator().manual_seed(0))
    lengths = r.completion_mask.sum(dim=1)
    last = [int(row[n - 1]) for row, n in zip(r.completion_ids, lengths)]
    assert bool(r.finished.all())
    assert set(last) == set(stops)  # some rows ended on <|im_end|>, others on <|endoftext|>
    assert not any(IM_END in t or EOT in t for t in decode_completions(tok, r, stops))


def _project(tmp_path, model, **sections):
    params = {
        "r1_zero": {"model": str(model), "dataset": "gsm8k", "dataset_size": 24, "prompt_format": "chat",
                    "steps": 2, "prompts_per_step": 4, "num_generations": 4, "micro_batch": 16,
                    "max_completion_length": 12, "checkpoint_every": 0, "sample_every": 1},
        "evaluate": {"models": {"qwen": "artifacts/r1_zero/model"}, "benchmarks": ["gsm8k"], "limit": 3, "k": 2,
                     "max_new_tokens": 12, "prompt_format": "chat"},
    }
    for name, values in sections.items():
        params[name] = {**params.get(name, {}), **values}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_r1_zero_trains_a_chat_model_on_gsm8k_train_and_evaluate_reads_test(chat_model, tmp_path):
    train, test = set(_questions("train")), set(_questions("test"))
    project = _project(tmp_path, chat_model)
    proc = run_cli(["stage", "r1_zero"], project)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "gsm8k/train.jsonl" in proc.stderr and f"{IM_START}user" in proc.stderr  # chat template used
    out = project / "artifacts" / "r1_zero"
    prompts = [json.loads(line) for line in (out / "prompts.jsonl").open()]
    assert prompts and all(p["prompt"] in train and p["prompt"] not in test for p in prompts)
    assert all(p["id"].startswith("gsm8k-train-") for p in prompts)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["decontaminated"] + len(prompts) == 24  # against evaluate.benchmarks: gsm8k test
    assert "overlap the evaluation sets ['gsm8k']" in proc.stderr
    assert metrics["model_revision"] == "local"
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert samples and not any(IM_END in s["completion"] or EOT in s["completion"] for s in samples)
    steps = [json.loads(line) for line in (out / "steps.jsonl").open()]
    assert all(s["truncated_rate"] < 1.0 for s in steps)  # rollouts stopped, on either id
    from model import factory

    assert factory.load_tokenizer(out / "model").chat_template == CHATML  # saved with the model, unchanged

    proc = run_cli(["stage", "evaluate@qwen"], project)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "loaded 3 rows from" in proc.stderr and "gsm8k/test.jsonl" in proc.stderr
    assert "gsm8k/train.jsonl" not in proc.stderr
    result = json.loads((project / "artifacts" / "evaluate" / "qwen" / "metrics.json").read_text())
    assert result["qwen"]["gsm8k"]["n"] == 3 and result["qwen"]["gsm8k"]["k"] == 2


@pytest.mark.parametrize("dataset", ["math500", "aime24", "humaneval"])
def test_a_test_only_benchmark_as_training_set_fails_saying_why(dataset, tmp_path):
    project = _project(tmp_path, "artifacts/base/model")
    proc = run_cli(["stage", "r1_zero", "--set", f"dataset={dataset}"], project)
    assert proc.returncode != 0
    assert (f"{dataset} has only a test split: it is an evaluation set; train on gsm8k (split train) "
            "or a file") in proc.stderr
    assert not (project / "artifacts" / "r1_zero").exists()


# --- unit tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,split,message", [
    ("arithmetic_test", "train", "use dataset=arithmetic with split=train"),
    ("countdown_hard", "train", "use dataset=countdown with split=train"),
    ("synthetic", "test", "reads the test split"),
    ("gsm8k", "test", "training and sampling stages never draw from it"),
    ("math500", "train", "math500 has only a test split"),
    ("HuggingFaceH4/aime_2024", "train", r"\(aime24\) has only a test split"),  # its hub id, whose one split is train
    ("OpenAI/OpenAI_HumanEval", "train", r"\(humaneval\) has only a test split"),
])
def test_training_stages_refuse_evaluation_splits(dataset, split, message):
    from infra.config import ConfigError, build_config
    from model.stages.cold_start import ColdStartConfig
    from model.stages.r1_zero import R1ZeroConfig
    from model.stages.rejection_sampling import RejectionSamplingConfig

    for cls in (R1ZeroConfig, ColdStartConfig, RejectionSamplingConfig):
        with pytest.raises(ConfigError, match=message):
            build_config(cls, {"dataset": dataset, "split": split})


def test_benchmark_files_named_by_path_are_refused_for_training():
    from infra.config import ConfigError, build_config
    from model.stages.r1_zero import R1ZeroConfig

    with pytest.raises(ConfigError, match=r"\(math500\) has only a test split"):
        build_config(R1ZeroConfig, {"dataset": str(shared_data("math500/test.jsonl"))})
    with pytest.raises(ConfigError, match=r"\(gsm8k\): this file is the test split"):
        build_config(R1ZeroConfig, {"dataset": str(shared_data("gsm8k/test.jsonl"))})
    assert build_config(R1ZeroConfig, {"dataset": str(shared_data("gsm8k/train.jsonl"))}).split == "train"


def test_splits_of_each_dataset_kind():
    from data.tasks import check_training_set, load_task

    shared_data("gsm8k/train.jsonl")
    assert load_task("gsm8k", split="train", limit=2, seed=0)[0]["id"] == "gsm8k-train-0000"
    assert load_task("gsm8k", split="test", limit=2, seed=0)[0]["id"] == "gsm8k-0000"
    assert {r["id"].split("-")[1] for r in load_task("arithmetic_hard", split="test", limit=3)} == {"hard"}
    assert {r["id"].split("-")[1] for r in load_task("synthetic", split="train", limit=8)} == {"train"}
    check_training_set("gsm8k", "train")  # no error
    check_training_set("arithmetic", "train")
    with pytest.raises(ValueError, match="has only a test split"):
        load_task("aime24", split="train", limit=1)


def test_decontamination_counts_and_synthetic_splits_stay_whole():
    from data.tasks import decontaminate_prompts, load_task

    train = load_task("synthetic", split="train", limit=400, seed=0)
    kept, removed = decontaminate_prompts(train, ["arithmetic_test", "countdown_test", "arithmetic_hard"], limit=2000)
    assert (len(kept), removed) == (400, 0)  # the synthetic splits are disjoint by construction

    shared_data("gsm8k/test.jsonl")
    test = load_task("gsm8k", split="test", limit=3)
    leaked = [{**row, "id": f"leak-{i}", "prompt": "Quick question. " + row["prompt"]} for i, row in enumerate(test)]
    rows = leaked + load_task("gsm8k", split="train", limit=5)
    kept, removed = decontaminate_prompts(rows, ["gsm8k"], limit=2000)
    assert removed >= 3 and not any(r["id"].startswith("leak-") for r in kept)
    with pytest.raises(ValueError, match="every prompt overlaps the evaluation sets"):
        decontaminate_prompts(leaked, ["gsm8k"], limit=2000)


def test_eval_sets_default_to_evaluate_benchmarks_of_params_yaml(tmp_path):
    from infra.config import load_stage_config
    from model.stages.r1_zero import R1ZeroConfig

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"evaluate": {"benchmarks": ["gsm8k", "arithmetic_test"]}, "r1_zero": {}}))
    assert load_stage_config(R1ZeroConfig, "r1_zero", path).eval_sets == ["gsm8k", "arithmetic_test"]
    path.write_text(yaml.safe_dump({"evaluate": {"benchmarks": ["gsm8k"]}, "r1_zero": {"eval_sets": ["math500"]}}))
    assert load_stage_config(R1ZeroConfig, "r1_zero", path).eval_sets == ["math500"]  # the stage's own wins


def test_sft_never_ends_a_truncated_completion_with_eos(tiny_base):
    from data.formatting import render_prompts
    from model import factory
    from model.sft import encode_rows

    tok = factory.load_tokenizer(tiny_base)
    short = "<think> 1 + 2 = 3 </think> <answer> 3 </answer>"
    rows = [{"prompt": "Compute 1 + 2", "completion": short},
            {"prompt": "Compute 1 + 2", "completion": "<think> " + "1 + 2 = 3 , write 3 . " * 40 + "</think>"}]
    width = len(render_prompts(tok, ["Compute 1 + 2"])[0]) + len(tok(" " + short, add_special_tokens=False)["input_ids"]) + 1
    (p0, c0), (p1, c1) = encode_rows(tok, rows, max_length=width)
    assert c0[-1] == tok.eos_token_id and len(p0) + len(c0) == width  # just fits: ends with EOS
    assert tok.eos_token_id not in c1 and len(p1) + len(c1) == width  # cut: no EOS, the window filled
    (_, cut), _ = encode_rows(tok, rows, max_length=width - 1)
    assert tok.eos_token_id not in cut  # one token short: the completion is cut, and gets no EOS


def test_each_prompt_asks_for_exactly_what_its_format_reward_checks():
    from data.formatting import INSTRUCTIONS, frame_chat_template, r1_zero_prompt
    from model.rewards import get_reward

    example = INSTRUCTIONS["readable"].rpartition("i.e., ")[2]
    assert "<answer>" not in INSTRUCTIONS["readable"]
    assert get_reward("readable_format")([example]) == [1.0] and get_reward("format")([example]) == [0.0]
    example = INSTRUCTIONS["tags"].rpartition("i.e., ")[2].rstrip(".")
    assert get_reward("format")([example]) == [1.0]

    from jinja2 import Template

    for output in INSTRUCTIONS:  # the saved frame template renders the plain-text prompt exactly
        text = Template(frame_chat_template(output)).render(messages=[{"role": "user", "content": " Q? "}],
                                                            eos_token="</s>")
        assert text == r1_zero_prompt("Q?", output)


def test_a_hub_id_is_pinned_to_its_commit_and_recorded(chat_model, tmp_path, monkeypatch):
    """A model named by hub id (served from a local hub cache, offline) is pinned to the commit
    its revision resolves to: the base's reference and metrics record it, later stages load it."""
    import shutil
    import subprocess
    import sys

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--r1flow--tiny-chat"
    shutil.copytree(chat_model, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    project = tmp_path / "p"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump({"base": {"model": "r1flow/tiny-chat", "revision": "main"}}))
    proc = run_cli(["stage", "base"], project)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((project / "artifacts" / "base" / "metrics.json").read_text())["model_revision"] == sha
    reference = json.loads((project / "artifacts" / "base" / "model" / "r1flow_reference.json").read_text())
    assert reference == {"name_or_path": "r1flow/tiny-chat", "revision": sha}
    probe = "from model import factory; print(factory.load_pinned('artifacts/base/model')[2])"
    out = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == sha, out.stderr[-2000:]

"""GPU check: the default synthetic task learns under GRPO on one GPU.

Builds the embedded default's base (corpus, tokenizer, tiny Llama, SFT pretraining) and runs
GRPO on it, both as one DeepSpeed rank on the GPU (bf16), then prints the reward curve in
windows of 5 steps. Uses the trainers directly (no MLflow / Great Expectations needed).

    python3 -m benchmarks.gpu_learning [--pretrain-steps 500] [--rl-steps 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=500)
    parser.add_argument("--rl-steps", type=int, default=50)
    args = parser.parse_args()
    import torch

    from data.formatting import r1_zero_prompt
    from data.synthetic import Noise, base_corpus
    from data.tasks import load_task
    from model import factory
    from model.grpo import GRPOArgs, GRPOTrainer
    from model.sft import SFTArgs, SFTTrainer
    from model.trainer import save_model

    out = tempfile.mkdtemp(prefix="gpu-learning-")
    mix = {"arithmetic": 0.75, "countdown": 0.25}
    rows = base_corpus(30000, mix=mix, noise=Noise(), seed=0)
    tok = factory.train_tokenizer((r1_zero_prompt(r["prompt"]) + " " + r["completion"] for r in rows), vocab_size=512)
    model = factory.build_tiny_model(tok).to("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    sft = SFTTrainer(model, tok, SFTArgs(max_steps=args.pretrain_steps, batch_size=64, micro_batch=64, lr=4e-3,
                                         checkpoint_every=0), f"{out}/base")
    sft.train(rows)
    t_sft = time.time() - t0
    prompts = load_task("synthetic", split="train", limit=4000, seed=0, mix=mix)
    # A fresh model object, as the r1_zero stage loads it: the SFT engine's ZeRO hooks stay on its own.
    save_model(sft.engine, tok, f"{out}/base/model")
    policy = factory.load_model(f"{out}/base/model", dtype="float32").to(model.device)
    grpo = GRPOTrainer(policy, tok, prompts, GRPOArgs(steps=args.rl_steps, checkpoint_every=0,
                                                                 sample_every=10), f"{out}/r1_zero")
    t0 = time.time()
    grpo.train()
    t_rl = time.time() - t0
    history = grpo.steps.read()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{device}: pretraining {args.pretrain_steps} steps {t_sft:.0f} s, "
          f"GRPO {args.rl_steps} steps {t_rl:.0f} s")
    print("| steps | reward | accuracy | accuracy/arithmetic | format | mean |ratio-1| |")
    print("|---|---:|---:|---:|---:|---:|")
    for i in range(0, len(history), 5):
        w = history[i:i + 5]
        mean = lambda k: sum(r.get(k, float("nan")) for r in w) / len(w)  # noqa: E731
        print(f"| {w[0]['step']}-{w[-1]['step']} | {mean('reward'):.3f} | {mean('accuracy'):.3f} | "
              f"{mean('accuracy/arithmetic'):.3f} | {mean('format_rate'):.3f} | {mean('ratio_dev'):.4f} |")
    samples = (grpo.out_dir / "samples.jsonl").read_text().splitlines()
    print("last samples:", *samples[-2:], sep="\n")


if __name__ == "__main__":
    main()


"""Compare saved models: do they load, are their weights whole, how far apart are they?

    python -m benchmarks.compare_models NAME=DIR NAME=DIR [...] [--reference NAME]

For each model: parameter count, whether any tensor is empty (a ZeRO-3 partition saved by
mistake), and against the reference (the first model by default) the largest relative weight
difference, the largest logit difference on a fixed batch of the default world's prompts, and
the share of positions where the greedy next token agrees. Prints a Markdown table and writes
it as JSON to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json


def _load(path: str):
    from model import factory

    model = factory.load_model(path, dtype="float32").eval()
    return model, factory.load_tokenizer(path)


def _batch(tokenizer, n: int = 16):
    import torch

    from data.formatting import render_prompts
    from data.tasks import load_task
    from model.rollout import left_pad

    rows = load_task("arithmetic_test", split="test", limit=n, seed=0)
    ids = render_prompts(tokenizer, [r["prompt"] for r in rows])
    return left_pad(ids, tokenizer.pad_token_id) if ids else (torch.zeros(0), torch.zeros(0))


def compare(models: dict[str, str], reference: str) -> list[dict]:
    """One row per model (see module doc); weights and logits in fp32 on the CPU."""
    import torch

    ref_model, tokenizer = _load(models[reference])
    ids, mask = _batch(tokenizer)
    with torch.no_grad():
        ref_logits = ref_model(input_ids=ids, attention_mask=mask).logits
    ref_params = {k: p.detach() for k, p in ref_model.named_parameters()}
    rows = []
    for name, path in models.items():
        model, _ = _load(path)
        params = {k: p.detach() for k, p in model.named_parameters()}
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        rel = max(float((params[k] - ref_params[k]).norm() / ref_params[k].norm().clamp(min=1e-12)) for k in params)
        real = mask.bool()
        rows.append({
            "model": name, "parameters": sum(p.numel() for p in params.values()),
            "empty_tensors": sum(p.numel() == 0 for p in params.values()),
            "max_rel_weight_diff": rel,
            "max_logit_diff": float((logits - ref_logits)[real].abs().max()),
            "greedy_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1))[real].float().mean()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--reference", help="name of the model the others are compared with (default: the first)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    rows = compare(models, args.reference or next(iter(models)))
    print("| model | parameters | empty tensors | max rel. weight diff | max logit diff | greedy agreement |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['empty_tensors']} | {r['max_rel_weight_diff']:.2e} | "
              f"{r['max_logit_diff']:.2e} | {r['greedy_agreement']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

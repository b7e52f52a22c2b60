#!/usr/bin/env bash
# Training stages launched as the pipeline launches them, on the GPUs of one host.
#
#   bash benchmarks/gpu_launch.sh gain [OUT]   # default world: base -> r1_zero -> evaluate@{base,r1_zero}, ZeRO-2
#   bash benchmarks/gpu_launch.sh zero [OUT]   # SFT (base) and GRPO (r1_zero) under ZeRO-2 and ZeRO-3, compared
#                                              # (GRPO starts from gain's trained base: run gain first)
#   bash benchmarks/gpu_launch.sh grpo-match [OUT]  # GRPO under ZeRO-2 vs ZeRO-3 after 1 and 2 steps (bf16)
#
# Every stage runs through `python -m flows.cli launch NAME` - the command dvc.yaml gives DVC,
# which the Prefect flow's task runs through `dvc repro` - with CUDA_VISIBLE_DEVICES set to the
# GPU set the pipeline's runner would hand it (all visible GPUs: infra/launch.yaml `gpus: auto`).
# So a training stage runs under the DeepSpeed launcher over every GPU, a sampling stage on one.
# Each variant works in its own copy of the project (stages write ./artifacts). Writes logs and
# JSON under OUT (default ./gpu-out) and prints Markdown tables last.
set -euo pipefail
mode=${1:?gain or zero}
out=$(realpath -m "${2:-gpu-out}")
src=$(pwd)
mkdir -p "$out"
gpus=$(python3 -c 'import torch; print(",".join(map(str, range(torch.cuda.device_count()))))')
ngpu=$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')
export CUDA_VISIBLE_DEVICES=$gpus PYTHONUNBUFFERED=1

# A copy of the project for one variant, with a ZeRO-3 config whose persistence threshold is 0
# (the tiny model would otherwise stay whole on every rank and hide ZeRO-3; see ../shared/ENV.md).
workdir() {
  local dir=/tmp/r1flow-$1
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$src" && tar --exclude=./.git --exclude=./.whl --exclude=./artifacts --exclude=./gpu-out -cf - .) | tar -xf - -C "$dir"
  python3 - "$dir/zero3_t0.json" <<'EOF'
import json, sys
from infra.launch import load_ds_config
cfg = load_ds_config("zero3")
cfg["zero_optimization"]["stage3_param_persistence_threshold"] = 0
json.dump(cfg, open(sys.argv[1], "w"))
EOF
  echo "$dir"
}

stage() {  # stage DIR LOG NAME [args...]: one stage as dvc.yaml runs it, timed
  local dir=$1 log=$2; shift 2
  local t0=$SECONDS
  (cd "$dir" && python3 -m flows.cli launch "$@") >"$out/$log.log" 2>&1 || { tail -40 "$out/$log.log"; exit 1; }
  echo "$log: $((SECONDS - t0)) s" | tee -a "$out/times.txt"
}

if [ "$mode" = gain ]; then
  d=$(workdir gain)
  stage "$d" base base --set micro_batch=$((64 / ngpu))   # params.yaml's global batch of 64, split over the GPUs
  stage "$d" r1_zero r1_zero
  stage "$d" evaluate_base evaluate@base
  stage "$d" evaluate_r1_zero evaluate@r1_zero
  python3 - "$d" "$out" <<'EOF'
import json, sys
d, out = sys.argv[1:]
r1 = json.load(open(f"{d}/artifacts/r1_zero/metrics.json"))
rows = {m: json.load(open(f"{d}/artifacts/evaluate/{m}/metrics.json"))[m] for m in ("base", "r1_zero")}
json.dump({"r1_zero": r1, "evaluate": rows}, open(f"{out}/gain.json", "w"), indent=1)
print(f"\nr1_zero reward: first tenth {r1['reward_first']:.3f} -> last tenth {r1['reward_last']:.3f} "
      f"({r1['steps_done']} steps)")
benches = sorted(rows["base"])
print("| model | " + " | ".join(f"{b} pass@1 % | {b} cons@k %" for b in benches) + " |")
print("|---|" + "---:|---:|" * len(benches))
for m, r in rows.items():
    print(f"| {m} | " + " | ".join(f"{100 * r[b]['pass@1']:.1f} | {100 * r[b]['cons@k']:.1f}" for b in benches) + " |")
EOF
  grep -h "launch:" "$out"/base.log "$out"/r1_zero.log "$out"/evaluate_base.log | head -3
fi

if [ "$mode" = zero ]; then
  [ -d /tmp/r1flow-gain/artifacts/base/model ] || { echo "run 'gain' first: GRPO starts from its base"; exit 1; }
  sft=(--set max_steps=40 --set checkpoint_every=20 --set micro_batch=$((64 / ngpu)))
  grpo=(--set steps=6 --set checkpoint_every=3 --set prompts_per_step=16 --set model=artifacts/base/model)
  for z in zero2 zero3_t0; do
    d=$(workdir "$z")
    cfg=$z; [ "$z" = zero3_t0 ] && cfg=$d/zero3_t0.json
    export R1FLOW_DS_CONFIG=$cfg
    stage "$d" "sft_$z" base "${sft[@]}"
    # GRPO from one trained base for both (a 40-step base earns no reward, so GRPO would not move).
    rm -rf "$d/artifacts/base/model" && cp -r /tmp/r1flow-gain/artifacts/base/model "$d/artifacts/base/model"
    stage "$d" "grpo_$z" r1_zero "${grpo[@]}"
  done
  unset R1FLOW_DS_CONFIG
  echo; echo "SFT (base stage, 40 steps):"
  python3 -m benchmarks.compare_models zero2=/tmp/r1flow-zero2/artifacts/base/model \
    zero3=/tmp/r1flow-zero3_t0/artifacts/base/model --json "$out/sft.json"
  echo; echo "GRPO (r1_zero stage, 6 steps from the same base):"
  python3 -m benchmarks.compare_models zero2=/tmp/r1flow-zero2/artifacts/r1_zero/model \
    zero3=/tmp/r1flow-zero3_t0/artifacts/r1_zero/model base=/tmp/r1flow-gain/artifacts/base/model --json "$out/grpo.json"
  grep -h "launch:\|zero stage\|world size" "$out"/grpo_zero3_t0.log | head -4
fi
if [ "$mode" = grpo-match ]; then
  [ -d /tmp/r1flow-gain/artifacts/base/model ] || { d=$(workdir gain); stage "$d" base base --set micro_batch=$((64 / ngpu)); }
  for variant in bf16_1 bf16_2; do
    steps=${variant#*_}
    for z in zero2 zero3_t0; do
      d=$(workdir "${z}_$variant")
      base_cfg=$z; [ "$z" = zero3_t0 ] && base_cfg=$d/zero3_t0.json
      python3 - "$base_cfg" "$d/ds.json" "${variant%_*}" <<'EOF2'
import json, sys
from infra.launch import load_ds_config
cfg = load_ds_config(sys.argv[1])
cfg["bf16"] = {"enabled": sys.argv[3] == "bf16"}
json.dump(cfg, open(sys.argv[2], "w"))
EOF2
      rm -rf "$d/artifacts/base/model" && mkdir -p "$d/artifacts/base" && cp -r /tmp/r1flow-gain/artifacts/base/model "$d/artifacts/base/model"
      R1FLOW_DS_CONFIG=$d/ds.json stage "$d" "grpo_${z}_$variant" r1_zero --set steps=$steps --set checkpoint_every=0 \
        --set prompts_per_step=16 --set model=artifacts/base/model
      grep -oh "reward=[0-9.]*, acc=[0-9.]*" "$out/grpo_${z}_$variant.log" | uniq | tr '\n' ' ' | sed "s/^/  $z $variant steps: /"; echo
    done
    echo; echo "GRPO, $steps step(s), ${variant%_*}:"
    python3 -m benchmarks.compare_models zero2=/tmp/r1flow-zero2_$variant/artifacts/r1_zero/model \
      zero3=/tmp/r1flow-zero3_t0_$variant/artifacts/r1_zero/model base=/tmp/r1flow-gain/artifacts/base/model \
      --json "$out/grpo_$variant.json"
  done
fi
cat "$out/times.txt"

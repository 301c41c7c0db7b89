#!/usr/bin/env bash
# Tune GPG's guidance question for preference prediction on training users (20 train / 20 dev, seed 0), with the
# Optuna search and with DSPy's GEPA, on the embedded Qwen2.5-Coder-1.5B (score mode, the CLI default for
# choice tasks), then compare both with the hand-written guidance on the first 200 test users.
# Score mode makes 6 short calls per example (digestion, profile, 4 one-token rotations), so the budget in calls is
# 1600 (planned: optuna 1566, gepa 1537); expect 1-2 h per optimizer on 2 cores. Every step resumes when rerun.
set -euo pipefail
limit="${1:-200}"
mkdir -p experiments/results/compiled
for optimizer in optuna gepa; do
  out="experiments/results/compiled/preference-${optimizer}-1.5b.json"
  [ -f "$out" ] || guided-profile optimize --task preference --data real --optimizer "$optimizer" --lm local \
    --train-limit 20 --dev-limit 20 --budget 1600 --out "$out"
done
guided-profile compare --task preference --data real --split test --limit "$limit" --lm local --no-progress \
  --programs handwritten,experiments/results/compiled/preference-optuna-1.5b.json,experiments/results/compiled/preference-gepa-1.5b.json \
  --out experiments/results/compare-preference-1.5b

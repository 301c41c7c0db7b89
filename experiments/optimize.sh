#!/usr/bin/env bash
# Tune GPG's guidance question and instructions for one task on training users (20 train / 20 dev, seed 0)
# with the embedded Qwen2.5-Coder-1.5B, then compare each compiled program with the hand-written guidance on
# the first N test users (default 200).  Choice tasks answer in score mode (the CLI default for them).
# Usage: experiments/optimize.sh TASK [N_TEST_USERS] [OPTIMIZER ...]   (default optimizers: optuna gepa)
#   e.g. experiments/optimize.sh preference 200 optuna gepa;  experiments/optimize.sh paraphrase 100 optuna
# The optuna run is sized to about an hour on 2 cores: 3 proposed guidance questions beside the hand-written one,
# each screened on the 20 dev users, then 8 TPE trials over guidance x final-step parts x profile length.
# GEPA gets 200 metric calls.  Both are the optimizers' defaults, written out so the command shows them.
# Every step resumes when rerun (Optuna's SQLite study, DSPy's answer cache, the run folders).
# Compiled programs go to experiments/results/compiled/TASK-OPTIMIZER-1.5b.json, the comparison to
# experiments/results/compare-TASK-1.5b/.
set -euo pipefail
task="${1:?usage: experiments/optimize.sh TASK [N_TEST_USERS] [OPTIMIZER ...]}"
limit="${2:-200}"
shift 2 || shift $#
optimizers=("$@")
[ "${#optimizers[@]}" -gt 0 ] || optimizers=(optuna gepa)
declare -A options=([optuna]="--option candidates=3 --option trials=8" [gepa]="--option max_metric_calls=200")
mkdir -p experiments/results/compiled
programs=handwritten
for optimizer in "${optimizers[@]}"; do
  out="experiments/results/compiled/${task}-${optimizer}-1.5b.json"
  # shellcheck disable=SC2086
  [ -f "$out" ] || guided-profile optimize --task "$task" --data real --optimizer "$optimizer" --lm local \
    --train-limit 20 --dev-limit 20 --budget 1600 ${options[$optimizer]:-} --out "$out"
  programs+=",$out"
done
guided-profile compare --task "$task" --data real --split test --limit "$limit" --lm local --no-progress \
  --programs "$programs" --out "experiments/results/compare-${task}-1.5b"

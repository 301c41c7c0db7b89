#!/usr/bin/env bash
# Table 1 of the paper (four methods) with the correct/incorrect/abstain split (Table 4 shape), in both answer
# modes, on the first 200 test users of ../shared/data/amazon_scientific; embedded Qwen2.5-Coder-1.5B, greedy,
# seed 0.  Grows both runs together in steps of 20 users, so a run cut short still compares the modes on the
# same users.  Resumable: rerun this script to continue.  Usage: experiments/table1_preference.sh [N_USERS]
set -euo pipefail
total="${1:-200}"
for ((limit = 20; limit <= total; limit += 20)); do
  for mode in generate score; do
    guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --data real --split test \
      --limit "$limit" --seed 0 --lm local --answer-mode "$mode" --no-progress \
      --out "experiments/results/table1-preference-${mode}-1.5b"
  done
done

#!/usr/bin/env bash
# Table 1 of the paper (four methods) with the correct/incorrect/abstain split (Table 4 shape), in both answer
# modes, on the titles-only history (the paper's; datasets/README.md): the first N_TEST test users and, to
# choose the answer mode without looking at test, the first N_DEV dev users.  ../shared/data/amazon_scientific,
# embedded Qwen2.5-Coder-1.5B, greedy, seed 0.  Grows every run together in steps of 20 users (dev first), so
# a run cut short still compares the modes on the same users.  Resumable: rerun this script to continue.
# Usage: experiments/table1_preference.sh [N_TEST] [N_DEV]   (defaults 200 and 60)
set -euo pipefail
n_test="${1:-200}"
n_dev="${2:-60}"
step() {  # split limit folder-prefix
  for mode in generate score; do
    guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --data real --split "$1" \
      --limit "$2" --seed 0 --lm local --answer-mode "$mode" --no-progress \
      --out "experiments/results/$3-${mode}-1.5b"
  done
}
for ((limit = 20; limit <= (n_test > n_dev ? n_test : n_dev); limit += 20)); do
  if ((limit <= n_dev)); then step dev "$limit" answer-mode-dev-preference; fi
  if ((limit <= n_test)); then step test "$limit" table1-preference-titles; fi
done

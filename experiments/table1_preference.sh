#!/usr/bin/env bash
# Table 1 of the paper (four methods) with the correct/incorrect/abstain split (Table 4 shape), in both answer
# modes, on the titles-only history (the paper's; datasets/README.md): the first N_TEST test users and, to
# choose the answer mode without looking at test, the first N_DEV dev users.  ../shared/data/amazon_scientific,
# embedded Qwen2.5-Coder-1.5B, greedy, seed 0.  Order: dev in both modes (the choice), then test in score mode
# (the mode dev chose, the headline), then test in generate mode (Table 4's split), each growing in steps of
# 20 users so a run cut short still compares the methods on the same users.  Resumable: rerun to continue.
# Usage: experiments/table1_preference.sh [N_TEST] [N_DEV]   (defaults 200 and 60)
set -euo pipefail
n_test="${1:-200}"
n_dev="${2:-60}"
run() {  # split limit mode folder
  guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --data real --split "$1" \
    --limit "$2" --seed 0 --lm local --answer-mode "$3" --retriever recent --no-progress \
    --out "experiments/results/$4-$3-1.5b"
}
for ((limit = 20; limit <= n_dev; limit += 20)); do
  for mode in generate score; do run dev "$limit" "$mode" answer-mode-dev-preference; done
done
for mode in score generate; do
  for ((limit = 20; limit <= n_test; limit += 20)); do run test "$limit" "$mode" table1-preference-titles; done
done

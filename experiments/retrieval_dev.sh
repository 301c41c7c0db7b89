#!/usr/bin/env bash
# Retrieval before digestion (issue 21), the choice on dev: GPG (PC + PP) in score mode (4 rotations) on the first
# N dev users of purchase preference (default 60) with each retriever (recent, bm25, dense) at k = 4 and 8, one run
# folder per (retriever, k): experiments/results/retrieval-dev-preference-RETRIEVER-kK-1.5b.  Everything else is
# the dev run that chose score mode (experiments/results/answer-mode-dev-preference-score-1.5b: titles-only
# history, embedded Qwen2.5-Coder-1.5B, seed 0, max_history_chars 6000), so experiments/report_retrieval.py pairs
# each folder with it on the same users ("preference, dev users" in results/retrieval.md).
# The rule, fixed before the runs: a (retriever, k) becomes the default only if, on these users, its accuracy and
# its gold-option probability are both at least the whole history's and it computes fewer prompt tokens; of
# several, the highest gold-option probability; otherwise `recent` with the whole kept history stays the default.
# The test runs (retrieval_preference.sh) report and choose nothing.
# Grows every folder together in steps of 20 users; resumable: rerun to continue.
# Usage: experiments/retrieval_dev.sh [N_DEV]   (default 60; about 6 x 25 s per user on 2 cores)
set -euo pipefail
total="${1:-60}"
for ((limit = 20; limit <= total; limit += 20)); do
  for retriever in recent bm25 dense; do
    for k in 4 8; do
      guided-profile run --task preference --methods gpg --data real --split dev --limit "$limit" --seed 0 \
        --lm local --answer-mode score --retriever "$retriever" --k "$k" --no-progress \
        --out "experiments/results/retrieval-dev-preference-${retriever}-k${k}-1.5b"
    done
  done
done

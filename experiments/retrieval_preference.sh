#!/usr/bin/env bash
# Retrieval before digestion (issue 21) on purchase preference: GPG (PC + PP) in score mode (4 rotations) on the
# first N test users (default 200) with each retriever (recent: the last k purchases; bm25; dense: MiniLM cosine,
# both matched against the question and the four options) at k = 4 and 8, every step reading the k purchases
# kept, one run folder per (retriever, k): experiments/results/retrieval-preference-RETRIEVER-kK-1.5b.  Everything
# else is the Table 1 score run's (experiments/table1_preference.sh: titles-only history, embedded
# Qwen2.5-Coder-1.5B, seed 0, max_history_chars 6000), so experiments/report_retrieval.py pairs each folder with
# table1-preference-titles-score-1.5b on the same users.  Half of the first 200 test users have at most 8
# purchases (results/cold-start-counts.md): k = 8 keeps their whole history, the whole-history run's prompts.
# Grows every folder together in steps of 20 users, so a run cut short still compares all of them on the same
# users.  Resumable: rerun to continue.
# These test runs report; they choose nothing: `recent` stays the default retriever unless the same comparison
# on dev users says otherwise (experiments/retrieval_dev.sh, its rule stated there: test stays sealed for choices).
# Usage: experiments/retrieval_preference.sh [N_TEST]   (default 200)
set -euo pipefail
total="${1:-200}"
for ((limit = 20; limit <= total; limit += 20)); do
  for retriever in recent bm25 dense; do
    for k in 4 8; do
      guided-profile run --task preference --methods gpg --data real --split test --limit "$limit" --seed 0 \
        --lm local --answer-mode score --retriever "$retriever" --k "$k" --no-progress \
        --out "experiments/results/retrieval-preference-${retriever}-k${k}-1.5b"
    done
  done
done

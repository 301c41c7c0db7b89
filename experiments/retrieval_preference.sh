#!/usr/bin/env bash
# Retrieval before digestion (issue 21) on purchase preference: GPG (PC + PP) in score mode (4 rotations) on the
# first N users of a split with each retriever (recent: the last k purchases; bm25; dense: MiniLM cosine, both
# matched against the question and the four options) at k = 4 and 8, every step reading the k purchases kept, one
# run folder per (retriever, k).  Everything else is the whole-history run it is paired with (titles-only
# history, embedded Qwen2.5-Coder-1.5B, seed 0, max_history_chars 6000) by experiments/report_retrieval.py:
# - dev, the choice (`experiments/retrieval_preference.sh 60 dev`): experiments/results/
#   retrieval-dev-preference-RETRIEVER-kK-1.5b against answer-mode-dev-preference-score-1.5b (the 60 dev users
#   that chose score mode).  The rule, fixed before the runs: a (retriever, k) becomes the default only if, on
#   these users, its accuracy and its gold-option probability are both at least the whole history's and its
#   answer steps read fewer prompt tokens (the report's answer-step column: the baseline took most digestions
#   and profiles from the profile store, so whole-pipeline tokens pair on few users); of several, the highest
#   gold-option probability; otherwise `recent` with the whole kept history stays the default.
# - test, the report (the default): retrieval-preference-RETRIEVER-kK-1.5b against
#   table1-preference-titles-score-1.5b on the first N test users (default 200).  These runs choose nothing.
#   Half of the first 200 test users have at most 8 purchases (results/cold-start-counts.md): k = 8 keeps their
#   whole history, the whole-history run's prompts.
# Grows every folder together in steps of 20 users, so a run cut short still compares all of them on the same
# users.  Resumable: rerun to continue.
# Usage: experiments/retrieval_preference.sh [N] [SPLIT]   (default 200 test; about 6 x 25 s per user on 2 cores)
set -euo pipefail
total="${1:-200}"
split="${2:-test}"
prefix="retrieval-preference"
[ "$split" = test ] || prefix="retrieval-${split}-preference"
for ((limit = 20; limit <= total; limit += 20)); do
  for retriever in recent bm25 dense; do
    for k in 4 8; do
      guided-profile run --task preference --methods gpg --data real --split "$split" --limit "$limit" --seed 0 \
        --lm local --answer-mode score --retriever "$retriever" --k "$k" --no-progress \
        --out "experiments/results/${prefix}-${retriever}-k${k}-1.5b"
    done
  done
done

#!/usr/bin/env bash
# Retrieval before digestion (issue 21) on LaMP-7 tweet paraphrasing: GPG (PC + G + PP) and DG w/ PC on the first
# N test users (default 200) with each retriever (recent: the last k tweets in the profile file's order, which
# LaMP-7 does not date; bm25; dense: MiniLM cosine) at
# k = 4 and 8, every step reading the k tweets kept, one run folder per (retriever, k):
# experiments/results/retrieval-paraphrase-RETRIEVER-kK-1.5b.  Everything else is experiments/text_tasks.sh's
# (embedded Qwen2.5-Coder-1.5B, greedy, seed 0, generate mode, max_history_chars 6000), so
# experiments/report_retrieval.py pairs each folder with paraphrase-four-methods-1.5b on the same users.  Every
# test user has at least 9 tweets (results/cold-start-counts.md): k = 4 and 8 always choose.  Grows every folder
# together in steps of 20 users, so a run cut short still compares all of them on the same users.  Resumable:
# rerun to continue.
# A control, on the first 40 users: `recent` with k = 1000 keeps every tweet, so it sends the whole-history run's
# prompts again, computed afresh (--no-cache --no-store).  Its difference from the whole-history run is what a
# rerun alone moves (4 server slots are not bit-repeatable: results/determinism-0.5b) plus any drift of the code
# since that run (made at commits it did not record): the yardstick for the retrievers' differences.
# These test runs report; they choose nothing: `recent` stays the default retriever unless the same comparison
# on dev users says otherwise.
# - dev, the choice (`experiments/retrieval_paraphrase.sh 60 dev`): the same six folders on the first N dev users,
#   experiments/results/retrieval-dev-paraphrase-RETRIEVER-kK-1.5b, against a whole-history run of the same two
#   methods on those users, experiments/results/paraphrase-dev-whole-history-1.5b, grown with them (no control),
#   computed afresh (--no-cache --no-store: issue 18's search ran GPG on these users, and a step answered by a
#   cache records no tokens for the rule to compare).
#   The rule, fixed before the runs (as preference's): a (retriever, k) becomes paraphrase's default only if, on
#   these users, GPG's METEOR and ROUGE-L are both at least the whole history's and its answer steps read fewer
#   prompt tokens; of several, the highest METEOR; otherwise `recent` with the whole kept history stays the
#   default.  experiments/report_retrieval.py applies it once every folder has every user.
# Usage: experiments/retrieval_paraphrase.sh [N] [SPLIT]   (default 200 test; dev: about 7 x 30 s per user)
set -euo pipefail
total="${1:-200}"
split="${2:-test}"
prefix="retrieval-paraphrase"
control=40
if [ "$split" != test ]; then
  prefix="retrieval-${split}-paraphrase"
  control=0
fi
for ((limit = 20; limit <= total; limit += 20)); do
  if [ "$split" != test ]; then
    guided-profile run --task paraphrase --methods dg-pc,gpg --data real --split "$split" --limit "$limit" --seed 0 \
      --lm local --no-cache --no-store --no-progress --out "experiments/results/paraphrase-${split}-whole-history-1.5b"
  fi
  if ((limit <= control)); then
    guided-profile run --task paraphrase --methods dg-pc,gpg --data real --split test --limit "$limit" --seed 0 \
      --lm local --retriever recent --k 1000 --no-cache --no-store --no-progress \
      --out "experiments/results/retrieval-paraphrase-recent-k1000-1.5b"
  fi
  for retriever in recent bm25 dense; do
    for k in 4 8; do
      guided-profile run --task paraphrase --methods dg-pc,gpg --data real --split "$split" --limit "$limit" \
        --seed 0 --lm local --retriever "$retriever" --k "$k" --no-progress \
        --out "experiments/results/${prefix}-${retriever}-k${k}-1.5b"
    done
  done
done

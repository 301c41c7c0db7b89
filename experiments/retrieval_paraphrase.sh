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
# on dev users says otherwise (scripted for preference only, `experiments/retrieval_preference.sh 60 dev`:
# paraphrase has no whole-history dev run to pair with yet; the test split stays sealed for choices).
# Usage: experiments/retrieval_paraphrase.sh [N_TEST]   (default 200)
set -euo pipefail
total="${1:-200}"
control=40
for ((limit = 20; limit <= total; limit += 20)); do
  if ((limit <= control)); then
    guided-profile run --task paraphrase --methods dg-pc,gpg --data real --split test --limit "$limit" --seed 0 \
      --lm local --retriever recent --k 1000 --no-cache --no-store --no-progress \
      --out "experiments/results/retrieval-paraphrase-recent-k1000-1.5b"
  fi
  for retriever in recent bm25 dense; do
    for k in 4 8; do
      guided-profile run --task paraphrase --methods dg-pc,gpg --data real --split test --limit "$limit" --seed 0 \
        --lm local --retriever "$retriever" --k "$k" --no-progress \
        --out "experiments/results/retrieval-paraphrase-${retriever}-k${k}-1.5b"
    done
  done
done

#!/usr/bin/env bash
# Table 3 of the paper (the ablation grid: which of PC / G / PP the final step sees, plus DG and PG) on the same
# test users as experiments/table1_preference.sh, score mode (embedded 1.5B, seed 0, titles-only history).
# Digestions and profiles come from the profile store the Table 1 runs filled (one per user and kind), and the
# DG / PG / GPG rows from DSPy's answer cache, so each extra row costs only its answer step.  Resumable.
# Usage: experiments/table3_preference.sh [N_TEST]   (default 200)
set -euo pipefail
limit="${1:-200}"
guided-profile run --task preference --data real --split test --limit "$limit" --seed 0 --lm local \
  --answer-mode score --retriever recent --no-progress \
  --methods dg-no-pc,dg-pc,pg,gpg:g,gpg:pp,gpg:g+pp,gpg:pc+g,gpg:pc+pp,gpg:pc+g+pp \
  --out experiments/results/table3-preference-titles-score-1.5b

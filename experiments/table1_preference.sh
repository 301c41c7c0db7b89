#!/usr/bin/env bash
# Table 1 of the paper (four methods) and the correct/incorrect/abstain split (Table 4 shape) on the first
# 200 test users of ../shared/data/amazon_scientific, embedded Qwen2.5-Coder-1.5B, greedy, seed 0.
# Resumable: rerun the same command to continue an interrupted run.
set -euo pipefail
mode="${1:-generate}"
guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --data real --split test --limit 200 \
  --seed 0 --lm local --no-progress --out "experiments/results/table1-preference-${mode}-1.5b"

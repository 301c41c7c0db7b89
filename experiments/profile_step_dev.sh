#!/usr/bin/env bash
# Is `--profile-step continued` (GPG's profile step written as the next turn of the digestion's conversation, so
# the digestion's reply is not read again) as accurate as the default?  Decided on dev, before it may become the
# default: GPG in score mode on the first N dev users, paired in experiments/report_table1.py against
# answer-mode-dev-preference-score-1.5b (the same users, the default `separate` profile step).  The digestions
# come from the profile store those runs filled; the continued profiles are new (the store keys them apart).
# Usage: experiments/profile_step_dev.sh [N]   (default 60)
set -euo pipefail
n="${1:-60}"
for ((limit = 20; limit <= n; limit += 20)); do
  guided-profile run --task preference --methods gpg --data real --split dev --limit "$limit" --seed 0 --lm local \
    --answer-mode score --profile-step continued --retriever recent --no-progress \
    --out experiments/results/profile-step-dev-preference-continued-score-1.5b
done

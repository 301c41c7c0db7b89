#!/usr/bin/env bash
# Is `--prompt-layout options-last` (the answer instruction before the options, so each score-mode rotation
# recomputes only the options) as accurate as the default?  Decided on dev, before it may become the default:
# the four methods in score mode on the first N dev users, paired in experiments/report_table1.py against
# answer-mode-dev-preference-score-1.5b (the same users, the default layout).  The digestions and profiles come
# from the profile store those runs filled, so only the answer step is paid for.  Resumable.
# Usage: experiments/prompt_layout_dev.sh [N]   (default 60)
set -euo pipefail
n="${1:-60}"
for ((limit = 20; limit <= n; limit += 20)); do
  guided-profile run --task preference --methods dg-no-pc,dg-pc,pg,gpg --data real --split dev --limit "$limit" \
    --seed 0 --lm local --answer-mode score --prompt-layout options-last --retriever recent --no-progress \
    --out experiments/results/prompt-layout-dev-preference-options-last-score-1.5b
done

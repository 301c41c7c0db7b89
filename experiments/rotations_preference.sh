#!/usr/bin/env bash
# Effect of the number of option rotations (1, 2, 4) on GPG accuracy and cost in score mode, on the same test
# users as experiments/table1_preference.sh (titles-only history; embedded 1.5B, seed 0).  Rotation k's prompt is
# the same whatever the rotation count, so after the Table 1 score run these mostly replay DSPy's answer cache; the
# cost columns therefore come from the records of the rotations=4 run (see experiments/results/README.md).
# (rotations-preference-gpg-r{1,2}-1.5b/ are the earlier runs on the categories-shown history.)
set -euo pipefail
limit="${1:-200}"
for rotations in 1 2; do
  guided-profile run --task preference --methods gpg --data real --split test --limit "$limit" --seed 0 \
    --lm local --answer-mode score --rotations "$rotations" --retriever recent --no-progress \
    --out "experiments/results/rotations-preference-titles-gpg-r${rotations}-1.5b"
done

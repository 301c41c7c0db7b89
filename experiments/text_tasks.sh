#!/usr/bin/env bash
# Figure 3 shape (LaMP-7 tweet paraphrasing: ROUGE-1, ROUGE-2, METEOR, ROUGE-L, BLEU) and Table 2 shape
# (PersonaChat dialogue: MiniLM similarity, BERTScore, profile quality) for the paper's four methods on the first
# 200 test users of each real data set; embedded Qwen2.5-Coder-1.5B, greedy, seed 0.  PersonaChat is split by
# persona (one persona plays several dialogues), and its test split holds 192 dialogues of 128 personas: the
# dialogue run stops there, at all of them.  Grows in steps of 20 users, alternating the tasks, so a run cut short
# has both tasks on comparable n.  Resumable: rerun to continue.
set -euo pipefail
total="${1:-200}"
for ((limit = 20; limit <= total; limit += 20)); do
  for task in paraphrase dialogue; do
    guided-profile run --task "$task" --methods dg-no-pc,dg-pc,pg,gpg --data real --split test \
      --limit "$limit" --seed 0 --lm local --no-progress --out "experiments/results/${task}-four-methods-1.5b"
  done
done

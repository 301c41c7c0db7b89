#!/usr/bin/env bash
# Tune GPG's guidance question and instructions for one task with the embedded Qwen2.5-Coder-1.5B (seed 0), the
# way issue 18 asks: 20 train users for proposals, 160 dev users split by user into a search part (~116, where
# the Optuna search races configurations and stops ones a repeated Wilcoxon test finds worse) and a confirm part
# (~44, never seen by the search), the task's smooth objective (preference in score mode: the gold option's
# probability), 4 dev examples at once.  The exported program is the confirm stage's winner only if it beats the
# hand-written program there (Bonferroni-adjusted paired test); otherwise the hand-written program is exported,
# and the verdict line says so before test is read.  Then the confirm stage's winner is compared with the
# hand-written guidance on the first N test users (default 200): predicted (confirm) and realized (test) gains
# side by side in compare.md.  When the verdict refused it, the winner is exported a second time, flagged as
# unconfirmed (TASK-OPTIMIZER-raced-unconfirmed-1.5b.json, from the same run folder: nothing is searched or
# confirmed again), and that file is what test compares: whether the refusal was right is the point of the run.
# Our own guidance questions for TASK, if experiments/candidates/TASK.txt exists, are searched with the proposals.
# Usage: [OBJECTIVE=NAME] experiments/optimize.sh TASK [N_TEST_USERS] [OPTIMIZER ...]   (default: optuna gepa)
#   e.g. experiments/optimize.sh preference 200 optuna gepa;  experiments/optimize.sh paraphrase 200 optuna;
#   OBJECTIVE=gold_margin experiments/optimize.sh preference 200 optuna
# Cost (1.5B, 2 cores, score mode, ~40 s per user and configuration before racing): each guidance question
# pays its digestions and profiles once per dev user (the answer cache makes final-step-only changes cheap),
# so the optuna defaults (3 proposals + hand-written, 8 trials) are several hours; grow it across sessions:
# every step resumes when rerun (Optuna's SQLite study, the confirm stage's confirm.jsonl, DSPy's answer cache,
# the run folders).  The run folder (study.db, confirm.jsonl, cost.json; answers.jsonl for gepa) is committed at
# each stop: a later session may run on a fresh machine, where only what git holds is left (not DSPy's answer cache).
# Every step reads the whole kept history (`--retriever recent`, as the paper's GPG): the preference search began
# before dev users chose bm25 with k 4 as that task's default, and the compare must give the hand-written program
# the history the search gave it.
# Compiled programs go to experiments/results/compiled/TASK-OPTIMIZER-raced-1.5b.json (an Optuna search's report to
# TASK-optuna-raced-1.5b.run/search.md: experiments/report_search.py), the comparison to
# experiments/results/compare-TASK-raced-1.5b/.  (The -1.5b files without "raced" are the earlier 20/20 runs.)
set -euo pipefail
task="${1:?usage: experiments/optimize.sh TASK [N_TEST_USERS] [OPTIMIZER ...]}"
limit="${2:-200}"
shift 2 || shift $#
optimizers=("$@")
[ "${#optimizers[@]}" -gt 0 ] || optimizers=(optuna gepa)
declare -A options=([optuna]="--option candidates=3 --option trials=8" [gepa]="--option max_metric_calls=600")
# OBJECTIVE=NAME maximises another per-example metric than the task's default (e.g. OBJECTIVE=gold_margin for
# preference); its files carry the name: TASK-OPTIMIZER-raced-NAME-1.5b.json, compare-TASK-raced-NAME-1.5b/.
objective="${OBJECTIVE:-}"
tag="raced${objective:+-$objective}"
objective_option=()
[ -n "$objective" ] && objective_option=(--objective "$objective")
# Guidance questions of our own, where a task has them: searched with the proposals (see the file's header).
candidates=()
[ -f "experiments/candidates/${task}.txt" ] && candidates=(--candidates "experiments/candidates/${task}.txt")
mkdir -p experiments/results/compiled
tune() {  # tune OPTIMIZER OUT [OPTION ...]: one optimization into OUT, skipped once OUT exists
  local optimizer="$1" out="$2"
  shift 2
  [ -f "$out" ] && return
  # shellcheck disable=SC2086
  guided-profile optimize --task "$task" --data real --optimizer "$optimizer" --lm local \
    --train-limit 20 --dev-limit 160 --confirm-fraction 0.3 --confirm-top 3 --parallel 4 --retriever recent \
    ${options[$optimizer]:-} "${candidates[@]}" "${objective_option[@]}" "$@" --out "$out"
}
programs=handwritten
for optimizer in "${optimizers[@]}"; do
  out="experiments/results/compiled/${task}-${optimizer}-${tag}-1.5b.json"
  tune "$optimizer" "$out"
  if [ "$optimizer" = optuna ]; then  # every trial, racing, cost and the confirm stage: X.run/search.md
    python experiments/report_search.py "$out"
  fi
  refused=$(python -c 'import json, sys; stage = json.load(open(sys.argv[1]))["confirm"]
print(int(stage["verdict"]["exported"] == "handwritten" and stage["winner"] != "handwritten"))' "$out")
  if [ "$refused" = 1 ]; then
    unconfirmed="experiments/results/compiled/${task}-${optimizer}-${tag}-unconfirmed-1.5b.json"
    tune "$optimizer" "$unconfirmed" --export-unconfirmed --run-dir "${out%.json}.run"
    python - "$out" "$unconfirmed" <<'PY'
import json, sys
first, again = (json.load(open(path))["confirm"] for path in sys.argv[1:])
if (first["winner"], first["finalists"]) != (again["winner"], again["finalists"]):
    sys.exit(f"{sys.argv[2]}: the replayed search chose another winner than {sys.argv[1]}")
PY
    out="$unconfirmed"
  fi
  programs+=",$out"
done
guided-profile compare --task "$task" --data real --split test --limit "$limit" --lm local --retriever recent \
  --no-progress \
  --programs "$programs" --out "experiments/results/compare-${task}-${tag}-1.5b"

#!/usr/bin/env bash
# Every 200-user result of experiments/results/, in the order that shares the most work: Table 1 first
# (its score-mode GPG is the compare's hand-written program, so the compare finds those answers in DSPy's
# cache), then the rotations (digestions and profiles from the profile store), the optimizers' compare,
# the text tasks, and the reports; then retrieval (issue 21), paired with the whole-history runs above,
# and its report.  Each step resumes where it stopped, so rerun this script after a cut.
# Hours of CPU on 2 cores (embedded 1.5B, from the token counts of the committed runs): Table 1 ~6
# (both modes, 200 test and 60 dev users), prompt-layout check on dev ~0.8, profile-step check ~0.4, rotations ~0.3, compare ~2 beyond Table 1, text tasks ~2.5; retrieval, estimated at the
# whole-history runs' cost (k items cost less): paraphrase ~4 (6 folders of DG w/ PC + GPG), preference ~3
# (6 folders of GPG in score mode), and the dev choice ~2.5 (6 folders, 60 dev users).
# Usage: experiments/all.sh [N_USERS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
bash experiments/table1_preference.sh "$n"
bash experiments/prompt_layout_dev.sh
bash experiments/profile_step_dev.sh
bash experiments/table3_preference.sh "$n"
bash experiments/rotations_preference.sh "$n"
bash experiments/optimize.sh preference "$n" optuna gepa
bash experiments/text_tasks.sh "$n"
python experiments/report_table1.py
python experiments/report_text_tasks.py
bash experiments/retrieval_preference.sh 60 dev
bash experiments/retrieval_paraphrase.sh "$n"
bash experiments/retrieval_preference.sh "$n"
python experiments/report_retrieval.py

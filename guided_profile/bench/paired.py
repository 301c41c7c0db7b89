"""What a faster configuration changes on the same users: its accuracy against plain DSPy's (paired),
and how many outputs batching changes against one slot, step by step."""

from __future__ import annotations

from typing import Any

from guided_profile.metrics.stats import paired_bootstrap, paired_permutation_pvalue

# The record field holding each step's output; in score mode the answer's option probabilities too
# (`scores`: they move with batching long before the letter chosen does).
STEP_OUTPUTS = {"digest": "guidance", "profile": "profile", "answer": "reply", "scores": "choice_probs"}


def _by_example(records: list[dict]) -> dict[str, dict]:
    return {r["example_id"]: r for r in records if not r.get("error")}


def _answer(record: dict) -> Any:
    """The answer as the task read it (a choice's letter), else the reply as written."""
    return record["metrics"].get("parsed", record.get("reply"))


def paired_difference(records: list[dict], reference: list[dict], objective: str) -> dict[str, Any]:
    """Mean of `objective` minus the reference's over the examples both scored, with a 95% paired bootstrap
    interval, a paired permutation p-value, and how many answers the two agree on."""
    own, ref = _by_example(records), _by_example(reference)
    shared = sorted(set(own) & set(ref))
    a = [float(own[e]["metrics"][objective]) for e in shared]
    b = [float(ref[e]["metrics"][objective]) for e in shared]
    if not shared:
        return {"n": 0}
    diff, lo, hi = paired_bootstrap(a, b)
    agree = sum(_answer(own[e]) == _answer(ref[e]) for e in shared)
    return {"n": len(shared), "diff": round(diff, 4), "ci95": [round(lo, 4), round(hi, 4)],
            "p": round(paired_permutation_pvalue(a, b), 4), "same_answer": agree}


def outputs_changed(records: list[dict], one_slot: list[dict]) -> dict[str, Any]:
    """Per step, on how many shared examples this run's output differs from the one-slot run's."""
    own, ref = _by_example(records), _by_example(one_slot)
    shared = sorted(set(own) & set(ref))
    changed = {"n": len(shared)}
    for step, field in STEP_OUTPUTS.items():
        present = [e for e in shared if own[e].get(field) is not None]
        if present:
            changed[step] = sum(own[e][field] != ref[e].get(field) for e in present)
    return changed

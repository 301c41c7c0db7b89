"""Hand-written against optimized: paired statistics, a markdown report and a chart.

Every program runs on the same test users, so differences are paired per user (a user's examples
averaged first): the mean difference against the hand-written GPG with a paired bootstrap interval
and a paired permutation p-value (see `metrics.stats`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import dspy

from guided_profile.datasets.example import Example
from guided_profile.files import write_bytes
from guided_profile.metrics.stats import paired_bootstrap, paired_permutation_pvalue, user_means
from guided_profile.programs.export import instructions
from guided_profile.programs.retrieved import retrieval_of
from guided_profile.report import fmt, fmt_p, markdown_table, p_clause, provenance_line, signed
from guided_profile.tasks.base import Task

REFERENCE = "handwritten"


def comparison_rows(task: Task, summaries: dict[str, dict], done: dict[tuple[str, str], dict],
                    examples: list[Example], reference: str = REFERENCE,
                    payloads: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per program: its summary, n, interval, paired difference against `reference`, cost; for a
    compiled program whose file records a confirm stage, the gain that stage predicted (`confirm`) and the
    paired difference realized here in the same objective (`realized`), side by side."""
    def scores(method: str, metric: str = task.objective) -> dict[str, float]:
        return {ex.example_id: done[(method, ex.example_id)]["metrics"][metric]
                for ex in examples if (method, ex.example_id) in done
                and metric in done[(method, ex.example_id)]["metrics"]}

    ref, user_of = scores(reference), {ex.example_id: ex.user_id for ex in examples}
    rows = []
    for method, summary in summaries.items():
        row: dict[str, Any] = {"method": method, "summary": summary, "n": summary["n"], "ci95": summary["ci95"]}
        if method != reference:
            row |= _paired(scores(method), ref, user_of)
            estimate = confirm_estimate((payloads or {}).get(method))
            if estimate is not None:
                metric = estimate["objective"]
                realized = _paired(scores(method, metric), scores(reference, metric), user_of)
                row |= {"confirm": estimate, "realized": realized or None}
        per = summary["per_example"]
        row["calls"] = per["calls"]
        row["store_hits"] = per.get("store_hits", 0)
        row["tokens"] = per["prompt_tokens"] + per["completion_tokens"]
        rows.append(row)
    return rows


def _paired(own: dict[str, float], ref: dict[str, float], user_of: dict[str, str]) -> dict[str, Any]:
    """Mean paired difference over the users of the examples both have (`paired_n` users), its bootstrap
    interval and permutation p-value."""
    paired = [eid for eid in own if eid in ref]
    if not paired:
        return {}
    users = [user_of[e] for e in paired]
    a, b = user_means([own[e] for e in paired], users), user_means([ref[e] for e in paired], users)
    diff, lo, hi = paired_bootstrap(a, b)
    return {"diff": diff, "diff_ci": (lo, hi), "p": paired_permutation_pvalue(a, b), "paired_n": len(a)}


def confirm_estimate(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The gain over the hand-written program that the confirm stage predicted for the exported program:
    its mean minus the hand-written's on the confirm users, with the verdict's interval.  When the
    stage exported the hand-written program itself, the prediction is exactly 0.  None for a file with
    no confirm stage (made before it existed, or with --confirm-fraction 0)."""
    stage = (payload or {}).get("confirm") or {}
    verdict, means = stage.get("verdict"), stage.get("means") or {}
    if not verdict or "handwritten" not in means:
        return None
    candidate = verdict["exported"] == "candidate"
    diff = (means[stage["winner"]] if candidate else means["handwritten"]) - means["handwritten"]
    beside = {metric: (candidate_mean - handwritten_mean if candidate else 0.0)  # accuracy beside the objective
              for metric, (candidate_mean, handwritten_mean) in (verdict.get("reported") or {}).items()}
    return {"objective": verdict["objective"], "diff": diff, "n": verdict["n"], "confirmed": verdict["confirmed"],
            "candidates": verdict["candidates"], "reported": beside,
            "diff_ci": (verdict["low"], verdict["high"]) if candidate else (0.0, 0.0), "exported": verdict["exported"]}


def table(task: Task, rows: list[dict[str, Any]], reference: str = REFERENCE) -> tuple[list[str], list[list[str]]]:
    metric_keys = list(task.columns)
    header = ["program", *metric_keys, "n", f"{task.objective} 95% CI", "paired users", f"diff vs {reference}",
              "diff 95% CI", "p (paired perm.)", "confirm estimate (dev)", "realized on this split", "failed",
              "cut", "calls/ex", "store hits/ex", "tokens/ex"]
    body = []
    for r in rows:
        s = r["summary"]
        ci = r["ci95"]
        body.append([r["method"], *[fmt(s.get(k)) for k in metric_keys], str(r["n"]),
                     f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-", str(r.get("paired_n", "-")),
                     signed(r["diff"]) if "diff" in r else "-",
                     f"[{signed(r['diff_ci'][0])}, {signed(r['diff_ci'][1])}]" if "diff" in r else "-",
                     fmt_p(r["p"]) if "p" in r else "-", *_predicted_and_realized(r), str(s["failed"]),
                     str(s["history_cut"]), f"{r['calls']:.1f}", f"{r['store_hits']:.1f}",
                     f"{r['tokens']:.0f}"])
    return header, body


def _predicted_and_realized(row: dict[str, Any]) -> tuple[str, str]:
    """The confirm stage's estimate and the paired difference here, in the same objective and form:
    "+0.041 [+0.010, +0.072] gold_probability, 44 users, confirmed"; "-" without a confirm stage."""
    estimate = row.get("confirm")
    if estimate is None:
        return "-", "-"
    low, high = estimate["diff_ci"]
    status = "confirmed" if estimate["confirmed"] else (
        "not confirmed, exported anyway" if estimate["exported"] == "candidate" else "not confirmed: hand-written")
    picked = f", best of {estimate['candidates']}" if estimate.get("candidates", 1) > 1 else ""
    beside = "".join(f"; {metric} {signed(diff)}" for metric, diff in estimate.get("reported", {}).items())
    predicted = (f"{signed(estimate['diff'])} [{signed(low)}, {signed(high)}] {estimate['objective']}, "
                 f"{estimate['n']} users{picked}, {status}{beside}")
    realized = row.get("realized")
    if not realized:
        return predicted, "-"
    low, high = realized["diff_ci"]
    return predicted, (f"{signed(realized['diff'])} [{signed(low)}, {signed(high)}] {estimate['objective']}, "
                       f"{realized['paired_n']} users, {p_clause(realized['p'])}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def instructions_table(programs: dict[str, dspy.Module], reference: str = REFERENCE) -> str:
    """Each step's instruction (the digest step's is the guidance question), one column per program;
    a changed one is marked with its step name in bold."""
    texts = {name: instructions(program) for name, program in programs.items()}
    steps: list[str] = []
    for found in texts.values():
        steps += [s for s in found if s not in steps]
    header = ["step", *texts]
    body = []
    for step in steps:
        base = texts.get(reference, {}).get(step)
        label = "digest (guidance question)" if step == "digest" else step
        cells = []
        for name in texts:
            text = texts[name].get(step, "-")
            changed = name != reference and base is not None and step in texts[name] and text != base
            cells.append(("**changed:** " if changed else "") + _cell(text))
        body.append([label, *cells])
    history = {name: history_read(program) for name, program in programs.items()}
    body.append(["history read (retrieval)", *(("**changed:** " if name != reference and reference in history
                                                and text != history[reference] else "") + text
                                               for name, text in history.items())])
    return markdown_table(header, body)


def _cost(usage: dict[str, Any], seconds: Any) -> tuple[str, str]:
    """(model calls paid, seconds) over every session of the search, or the exporting session's alone."""
    total = usage.get("all_sessions")
    if total:
        sessions = f" ({total['sessions']} sessions)" if total["sessions"] > 1 else ""
        return f"{total['model_calls']}{sessions}", _whole(total["seconds"])
    calls = usage.get("model_calls", usage.get("calls"))
    return (f"{calls} (last session)" if calls is not None else "-"), _whole(seconds)


def _whole(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def history_read(program: dspy.Module) -> str:
    """Which history items the program's steps read: a compiled program carries its own retrieval, so a
    difference in accuracy may come from it rather than from the instructions."""
    retrieval = retrieval_of(program)
    if retrieval is None or not retrieval.active:
        return "every item, most recent kept within max_history_chars"
    settings = "".join(f", {k}={v}" for k, v in retrieval.settings.items())
    return f"{retrieval.retriever} top {retrieval.k}{settings} ({retrieval.steps} steps)"


def markdown_report(task: Task, rows: list[dict[str, Any]], programs: dict[str, dspy.Module],
                    payloads: dict[str, dict[str, Any]], config: dict[str, Any], chart: str | None) -> str:
    header, body = table(task, rows)
    parts = [f"# {task.name}: hand-written vs optimized, split {config['split']}", "",
             f"Model: {config['lm'].get('model')}  ·  examples: {max((r['n'] for r in rows), default=0)}  ·  "
             f"objective: {task.objective}", "", f"Command: `{config['command']}`", "", provenance_line(config), "",
             markdown_table(header, body), "",
             f"Differences are paired per user against `{REFERENCE}` (the hand-written GPG; a user's examples "
             "averaged first): mean difference, "
             "paired bootstrap 95% interval, and a two-sided paired permutation (sign-flip) p-value. "
             "calls/ex and tokens/ex are the mean LM calls and prompt + generated tokens per example; steps taken "
             "from the profile store (store hits/ex) cost neither, so use --no-store to compare full costs.", "",
             "*confirm estimate (dev)* is the gain over the hand-written program that the optimizer's confirm stage "
             "predicted, on dev users its search never saw, in the objective it maximised (the verdict's interval: "
             "95% for one finalist, wider for the best of several, Bonferroni). The best of several was also picked on "
             "those users, so its estimate leans high ('best of k'): the interval and p-value allow for the pick, "
             "the mean does not. *realized on this split* is the paired difference measured here in that same "
             "objective. "
             "'-': the hand-written program itself, or a file made without a confirm stage.", ""]
    if chart:
        parts += [f"![{task.objective} per program]({chart})", ""]
    parts += ["## Instructions side by side", "", instructions_table(programs), ""]
    if payloads:
        parts += _made_from(payloads, config)
    return "\n".join(parts)


def _made_from(payloads: dict[str, dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """How each optimized program was made, and what it was tuned on relative to the users scored here
    (a program tuned on other data is a transfer evaluation, and the report says so)."""
    relations = config.get("held_out") or {}
    meta_rows = []
    for name, p in payloads.items():
        opt, scores, usage = p.get("optimizer", {}), p.get("scores", {}), p.get("usage", {})
        settings = ", ".join(f"{k}={v}" for k, v in (opt.get("settings") or {}).items() if k != "name")
        verdict = (p.get("confirm") or {}).get("verdict") or {}
        racing = (opt.get("info") or {}).get("racing") or {}
        meta_rows.append([name, str(opt.get("name", "-")), _cell(settings), p.get("method", "-"),
                          str(p.get("objective") or scores.get("objective", "-")), fmt(scores.get("train")),
                          fmt(scores.get("dev")), _cell(verdict.get("line", "-")),
                          *_cost(usage, p.get("seconds")),
                          f"{racing['saved']} of {racing['full_evaluation']}" if racing else "-",
                          str((p.get("lm") or {}).get("model", "-")), _cell(relations.get(name, "not checked"))])
    lines = ["## How the optimized programs were made", "",
             markdown_table(["program", "optimizer", "settings", "method", "objective", "train", "dev",
                             "confirm verdict", "model calls paid", "seconds", "dev evaluations saved by pruning",
                             "model", "tuned on"], meta_rows), "",
             "Model calls and seconds add up every optimize session of the search (its run folder's cost.json; a "
             "resumed session pays only for what DSPy's cache and the study do not hold); a file exported before "
             "that ledger existed shows its last session's alone, marked \"last session\".", ""]
    transfer = [name for name, relation in relations.items() if "transfer:" in relation]
    if transfer:
        lines += [f"**Transfer evaluation:** {', '.join(transfer)} {'was' if len(transfer) == 1 else 'were'} tuned on "
                  "other data than the users scored here (or another build of it), so these rows measure how the "
                  "tuning transfers.", ""]
    if config.get("allow_overlap") and any(r.startswith("overlap allowed") for r in relations.values()):
        lines += ["**Overlap allowed (--allow-overlap):** some programs are scored on users they were tuned on; "
                  "their scores are optimistic.", ""]
    return lines


def chart(task: Task, rows: list[dict[str, Any]], path: Path) -> Path:
    """Objective per program with its 95% interval, and the paired difference against the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["method"] for r in rows]
    means = [float("nan") if r["summary"].get(task.objective) is None else r["summary"][task.objective]
             for r in rows]  # a program that failed on every example has no score: drawn as a gap
    lows = [m - r["ci95"][0] if r["ci95"] else 0 for m, r in zip(means, rows, strict=True)]
    highs = [r["ci95"][1] - m if r["ci95"] else 0 for m, r in zip(means, rows, strict=True)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.6 * len(rows) + 2), sharey=True)
    ys = list(range(len(rows)))
    left.barh(ys, means, xerr=[lows, highs], color="#4C72B0", capsize=4)
    left.set_yticks(ys, names)
    left.invert_yaxis()
    if all(0 <= m <= 1 for m in means if m == m):  # rates and similarity scores: show the whole scale
        left.set_xlim(0, 1)
    left.set_xlabel(f"{task.objective} (95% bootstrap CI)")
    left.set_title(task.name)
    for y, r in zip(ys, rows, strict=True):
        if "diff" in r:
            lo, hi = r["diff_ci"]
            right.errorbar(r["diff"], y, xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", color="#DD8452",
                           capsize=4)
            right.annotate(p_clause(r["p"]), (r["diff"], y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    right.axvline(0, color="grey", lw=1)
    right.set_xlabel(f"paired difference vs {REFERENCE}")
    right.set_title("optimized - hand-written")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    write_bytes(path, png.getvalue())
    return path

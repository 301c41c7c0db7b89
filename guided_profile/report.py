"""Tables people can read: the terminal table and its markdown twin, from method summaries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from guided_profile.provenance import DIRTY, UNSTATED, made_at
from guided_profile.tasks.base import Task


def fmt(value: Any) -> str:
    if value is None:  # a metric no example had (e.g. profile quality of a method that writes no profile)
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def fmt_p(p: float) -> str:
    """A p-value as tables show it: three decimals, and "<0.001" rather than a 0.000 it never is."""
    return "<0.001" if p < 0.0005 else f"{p:.3f}"


def signed(value: float, digits: int = 3) -> str:
    """`value` with its sign and `digits` decimals, or up to two more when those would show a nonzero value
    as 0: "-0.04", not "-0.0", whose sign alone would say more than its number."""
    if value == 0:
        return f"{0.0:+.{digits}f}"  # -0.0 too
    for shown in (digits, digits + 1):
        text = f"{value:+.{shown}f}"
        if text.strip("+-0."):
            return text
    return f"{value:+.{digits + 2}f}"


def p_clause(p: float) -> str:
    """'p = 0.039', or 'p < 0.001' (the threshold is fmt_p's)."""
    text = fmt_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def totals_line(summaries: dict[str, dict]) -> str:
    """One line of what this command's methods cost on its examples (summed over the methods)."""
    t: dict[str, float] = {}
    for s in summaries.values():
        for key, value in s.get("totals", {}).items():
            t[key] = t.get(key, 0) + value
    return (f"totals: {t.get('calls', 0)} LM calls ({t.get('cache_hits', 0)} answered by DSPy's cache, "
            f"{t.get('store_hits', 0)} steps taken from the profile store); {t.get('prompt_tokens', 0)} prompt "
            f"tokens, of which {t.get('cached_prompt_tokens', 0)} reused from the prompt cache; "
            f"{t.get('completion_tokens', 0)} generated tokens ({t.get('truncated', 0)} replies cut at their token "
            f"limit, {t.get('empty_replies', 0)} empty); {t.get('model_seconds', 0):.1f} s of model time")


def failures_line(summaries: dict[str, dict]) -> str | None:
    """One line stating the failed method runs, if any: a table's n alone does not show that rows rest on
    fewer examples than asked."""
    failed = {method: s.get("failed", 0) for method, s in summaries.items() if s.get("failed", 0)}
    if not failed:
        return None
    each = ", ".join(f"{method} {n}" for method, n in failed.items())
    return (f"FAILED: {sum(failed.values())} method runs ({each}); their errors are in records.jsonl, and rerunning "
            "the same command retries only them")


def summary_rows(task: Task, summaries: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Columns: method, the task's metrics (objective with its 95% interval), n, failures, cost."""
    metric_keys = list(task.columns)
    header = ["method", *metric_keys, f"{task.objective} 95% CI", "n", "failed", "cut", "calls/ex", "store hits/ex",
              "prompt tok/ex", "cached/ex", "gen tok/ex", "s/ex"]
    rows = []
    for method, s in summaries.items():
        ci = s.get("ci95")
        per = s["per_example"]
        rows.append([method, *[fmt(s[k]) for k in metric_keys],
                     f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-", str(s["n"]), str(s["failed"]),
                     str(s["history_cut"]), fmt(per["calls"]), fmt(per.get("store_hits", 0.0)),
                     fmt(per["prompt_tokens"]),
                     fmt(per["cached_prompt_tokens"]), fmt(per["completion_tokens"]),
                     fmt(s["seconds_per_example"])])
    return header, rows


def by_example_id(ids: Iterable[str]) -> list[str]:
    """Example ids in a stable reading order: numeric ids by value (so "10" follows "9"), then the others."""
    return sorted(ids, key=lambda e: (not e.isdigit(), int(e) if e.isdigit() else 0, e))


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "not recorded"


def origin(config: dict[str, Any]) -> str:
    """'data sha256 ..., guided-profile 0.1.0 at commit ...': what a result's options do not say about
    where it came from (the commit is "not recorded" for runs made before it was)."""
    git = config.get("git") or {}
    dirty = {True: " with uncommitted changes", False: " (clean)"}.get(git.get("dirty"), "")
    return (f"data sha256 {_short(config.get('data_sha256'))}, guided-profile "
            f"{config.get('version') or '(version not recorded)'} at commit "
            f"{_short(git.get('commit'))}{dirty}{_records_made_at(config)}")


def _records_made_at(config: dict[str, Any]) -> str:
    """'; its records: 80 at 5395477a1b2c, 120 at a commit not recorded': where a folder grown across commits
    got its records, said only when they are not all the latest command's (its commit is what `origin` names)."""
    made = config.get("records_at") or {}
    if not made or list(made) == [made_at(config.get("git"))]:
        return ""
    counts = [f"{n} at {'a commit not recorded' if at == UNSTATED else _short(at.removesuffix(DIRTY))}"
              f"{' with uncommitted changes' if at.endswith(DIRTY) else ''}" for at, n in made.items()]
    return f"; its records: {', '.join(counts)}"


def provenance_line(config: dict[str, Any]) -> str:
    """One line of where a result came from, for report headers: data name and hash, split, seed, n,
    model and weights hash, package version and git commit."""
    lm = config.get("lm") or {}
    return (f"Data `{config.get('data')}`, split {config.get('split')}, seed {config.get('seed')}, "
            f"n = {config.get('n', 'not recorded')}; model {lm.get('model')} (weights sha256 "
            f"{_short(lm.get('sha256'))}); {origin(config)}.")

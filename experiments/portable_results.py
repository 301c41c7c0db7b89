"""Rewrite the committed results so they name no folder of the machine that made them (no LM call).

Runs made before data was named portably recorded it as an absolute path (`/work/shared/data/lamp7`);
they now say `real:lamp7`, which is also what a new run of the same command records, so resuming
one of these folders still finds the same configuration.  Each config also gains what new runs state
(n, the data's content hash, git commit), with the commit marked as not recorded: it is not known
which commit made them.  The compiled programs name their default Optuna study relative to the run
folder (`study.db`) and are checksummed again; configs that name them get the new checksums.

Preference results made before the titles-only history became the default (commit cde1217,
2026-11-26) printed each item's category: their configs, commands and compiled programs recorded no
task option, which today means titles only.  They now say `show_categories: true`, the option that
builds what they read (found from their records' histories; the compiled programs and the
profile-update experiment, which keep no history, from their dates).

    python experiments/portable_results.py           # rewrites in place; a second run changes nothing
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from guided_profile.evaluation import RECORDS, read_records  # noqa: E402
from guided_profile.programs.export import _checksum  # noqa: E402
from guided_profile.provenance import cached_data_sha256, portable  # noqa: E402
from guided_profile.runs import resolve_data  # noqa: E402
from guided_profile.tasks import get_task  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NOT_RECORDED = {"commit": None, "dirty": None}
SHOWN = {"show_categories": True}
SHOWN_FLAG = " --task-option show_categories=true"
TITLES_ONLY_SINCE = "2026-11-26T14:28:31+00:00"  # commit cde1217: histories show titles only by default
MADE_BEFORE_TITLES_ONLY = ("profile-update-preference-1.5b",)  # no history in its records: from its date (11-23)


def data_hash(name: str) -> str | None:
    """The content hash of a portably named data set on this machine (None if it is not here)."""
    try:
        return cached_data_sha256(resolve_data(get_task("preference"), name))
    except Exception:  # data not on this machine: leave the hash out rather than guess it
        return None


def with_provenance(config: dict, folder: Path) -> dict:
    """`config` with portable data and the fields new runs state (before `version`, where new runs write
    them; else at the end)."""
    if "git" in config or not config.get("data"):  # new already, or a benchmark's inner run (bench.json states it)
        return config
    config = config | {"data": portable(config["data"])}
    finished = {r["example_id"] for r in read_records(folder / RECORDS) if r.get("error") is None}
    added = {"n": len(finished), "data_sha256": data_hash(config["data"]), "git": NOT_RECORDED}
    keys = list(config)
    at = keys.index("version") if "version" in keys else len(keys)
    return {k: config[k] for k in keys[:at]} | added | {k: config[k] for k in keys[at:]}


def shows_categories(folder: Path) -> bool:
    """Whether the run in `folder` (or the runs in its subfolders: a benchmark's) read histories that print
    each item's category."""
    if folder.name in MADE_BEFORE_TITLES_ONLY:
        return True
    for records in [folder / RECORDS, *sorted(folder.glob(f"*/{RECORDS}"))]:
        if records.is_file():
            first = next(iter(read_records(records)), None)
            return first is not None and "(category: " in json.dumps(first.get("inputs", {}))
    return False


def with_categories_shown(config: dict) -> dict:
    """`config` (a run's, a benchmark's, a compiled program's) stating the option its history was built with."""
    if config.get("task_options", {}).get("show_categories") is True:
        return config
    shown = config | {"task_options": (config.get("task_options") or {}) | SHOWN}
    if config.get("command") and SHOWN_FLAG not in config["command"]:
        shown["command"] = config["command"] + SHOWN_FLAG
    return shown


def rewrite_json(path: Path, change) -> bool:
    """Apply `change` to the file's content; write (keeping the file's layout) only if it changed."""
    before = path.read_text(encoding="utf-8")
    after = json.dumps(change(json.loads(before)), indent=2) + ("\n" if before.endswith("\n") else "")
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def compiled_programs() -> dict[str, str]:
    """Make every compiled program portable; returns {old checksum: new checksum}."""
    renamed = {}
    for path in sorted((RESULTS / "compiled").glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        old = payload["checksum"]
        payload["data"]["path"] = portable(payload["data"]["path"])
        if payload.get("task") == "preference" and payload.get("created", "") < TITLES_ONLY_SINCE:
            payload = with_categories_shown(payload)
        for part in ("settings", "info"):
            storage = payload["optimizer"].get(part, {}).get("storage", "")
            if storage.startswith("sqlite:///") and storage.endswith(f"/{path.stem}.run/study.db"):
                payload["optimizer"][part]["storage"] = "study.db"  # the default: relative to the run folder
        payload["checksum"] = _checksum(payload)
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        renamed[old] = payload["checksum"]
    return renamed


def profile_update_report() -> list[Path]:
    """summary.md of the profile-update experiment, rebuilt by its own script from its summary and config."""
    sys.path.insert(0, str(Path(__file__).parent))
    from profile_update import markdown

    folder = RESULTS / "profile-update-preference-1.5b"
    report = folder / "summary.md"
    before = report.read_text(encoding="utf-8")
    summary, config = (json.loads((folder / name).read_text()) for name in ("summary.json", "config.json"))
    after = markdown(summary, config)
    report.write_text(after, encoding="utf-8")
    return [report] if after != before else []


def compare_report() -> list[Path]:
    """The committed comparison states what each program was tuned on (checked now, as a new compare
    would): config.json gains `held_out`.  compare.md keeps the tables of the code that made it (built
    now, its hand-written column would show today's instructions) and gets the config's command."""
    from guided_profile.held_out import check_held_out
    from guided_profile.programs.export import load_program_files
    from guided_profile.runs import load_split, optimizer_settings

    folder = RESULTS / "compare-preference-1.5b"
    config = json.loads((folder / "config.json").read_text())
    task = get_task(config["task"], seed=config["seed"], **config["task_options"])
    selected, source = load_split(task, config["data"], config["split"], config["seed"], config["limit"])
    files = {name: RESULTS / "compiled" / f"{name}.json" for name in config["programs"]}
    _, payloads = load_program_files(list(files.values()), task, taken={"handwritten"},
                                     optimizer_settings=optimizer_settings())
    relations = check_held_out(payloads, files, data_sha256=source.sha256, seed=config["seed"],
                               evaluated=[ex.example_id for ex in selected], task_options=config["task_options"])
    changed = [path for path in (folder / "config.json", folder / "summary.json") if rewrite_json(
        path, lambda c: c | {"held_out": relations, "allow_overlap": False} if "task" in c
        else c | {"config": c["config"] | {"held_out": relations, "allow_overlap": False}})]
    report = folder / "compare.md"
    before = report.read_text(encoding="utf-8")
    command = json.loads((folder / "config.json").read_text())["command"]
    after = re.sub(r"^Command: `.*`$", lambda _: f"Command: `{command}`", before, count=1, flags=re.MULTILINE)
    report.write_text(after, encoding="utf-8")
    return changed + ([report] if after != before else [])


def report_headers() -> list[Path]:
    """Run and benchmark tables written before report headers stated provenance get the line new ones
    have (from their config or bench.json), after the command; the tables themselves are left as written."""
    from guided_profile.report import origin, provenance_line

    changed = []
    for table in sorted(RESULTS.rglob("table.md")):
        text = table.read_text(encoding="utf-8")
        if "sha256" in text:
            continue
        if (table.parent / "bench.json").is_file():
            line = f"Provenance: {origin(json.loads((table.parent / 'bench.json').read_text()))}."
        elif (table.parent / "config.json").is_file():
            line = provenance_line(json.loads((table.parent / "config.json").read_text()))
        else:
            continue
        head, sep, rest = text.partition("\n\n|")  # the line goes before the first table
        table.write_text(f"{head}\n\n{line}{sep}{rest}", encoding="utf-8")
        changed.append(table)
    return changed


def main() -> None:
    renamed = compiled_programs()

    def config_change(folder: Path):
        def change(config: dict) -> dict:
            config = with_provenance(config, folder)
            if config.get("task", "preference") == "preference" and shows_categories(folder):
                config = with_categories_shown(config)
            if config.get("programs"):
                config["programs"] = {k: renamed.get(v, v) for k, v in config["programs"].items()}
            return config
        return change

    changed = []
    for path in sorted(RESULTS.rglob("config.json")):
        changed += [path] if rewrite_json(path, config_change(path.parent)) else []
    for path in sorted(RESULTS.rglob("summary.json")):
        if "config" in json.loads(path.read_text()):
            change = config_change(path.parent)
            if rewrite_json(path, lambda s, change=change: s | {"config": change(s["config"])}):
                changed.append(path)
    for path in sorted(RESULTS.rglob("bench.json")):
        def bench(result: dict, path: Path = path) -> dict:
            data = result["data"] | {"path": portable(result["data"]["path"])}
            added = {} if "git" in result else {"data_sha256": data_hash(data["path"]), "git": NOT_RECORDED}
            result = result | {"data": data} | added
            return with_categories_shown(result) if shows_categories(path.parent) else result
        changed += [path] if rewrite_json(path, bench) else []
    changed += profile_update_report() + compare_report() + report_headers()
    for path in changed:
        print(f"rewrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()

"""Rewrite the committed results so they name no folder of the machine that made them (no LM call).

Runs made before data was named portably recorded it as an absolute path (`/work/shared/data/lamp7`);
they now say `real:lamp7`, which is also what a new run of the same command records, so resuming
one of these folders still finds the same configuration.  Each config also gains what new runs state
(n, the data's content hash, git commit), with the commit marked as not recorded: it is not known
which commit made them.  The compiled programs name their default Optuna study relative to the run
folder (`study.db`) and are checksummed again; configs that name them get the new checksums.

    python experiments/portable_results.py           # rewrites in place; a second run changes nothing
"""

from __future__ import annotations

import json
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
    would) and its provenance: config.json gains `held_out`, and compare.md is rebuilt from the folder's
    summary and records (the chart is left as it is)."""
    from guided_profile.compare import comparison_rows, markdown_report
    from guided_profile.held_out import check_held_out
    from guided_profile.programs import build_program
    from guided_profile.programs.export import load_program_files
    from guided_profile.runs import load_split, optimizer_settings

    folder = RESULTS / "compare-preference-1.5b"
    config = json.loads((folder / "config.json").read_text())
    task = get_task(config["task"], seed=config["seed"], **config["task_options"])
    selected, source = load_split(task, config["data"], config["split"], config["seed"], config["limit"])
    files = {name: RESULTS / "compiled" / f"{name}.json" for name in config["programs"]}
    compiled, payloads = load_program_files(list(files.values()), task, taken={"handwritten"},
                                            optimizer_settings=optimizer_settings())
    relations = check_held_out(payloads, files, data_sha256=source.sha256, seed=config["seed"],
                               evaluated=[ex.example_id for ex in selected], task_options=config["task_options"])
    changed = [path for path in (folder / "config.json", folder / "summary.json") if rewrite_json(
        path, lambda c: c | {"held_out": relations, "allow_overlap": False} if "task" in c
        else c | {"config": c["config"] | {"held_out": relations, "allow_overlap": False}})]
    config = json.loads((folder / "config.json").read_text())
    programs = {"handwritten": build_program("gpg", task, answer_mode=config["answer_mode"],
                                             rotations=config["rotations"])} | compiled
    summaries = {m: s for m, s in json.loads((folder / "summary.json").read_text())["methods"].items() if m in programs}
    done = {(r["method"], r["example_id"]): r for r in read_records(folder / RECORDS) if r.get("error") is None}
    rows = comparison_rows(task, summaries, done, selected, payloads=payloads)
    report = folder / "compare.md"
    before = report.read_text(encoding="utf-8")
    report.write_text(markdown_report(task, rows, programs, payloads, config, "compare.png") + "\n", encoding="utf-8")
    return changed + ([report] if report.read_text(encoding="utf-8") != before else [])


def main() -> None:
    renamed = compiled_programs()

    def config_change(folder: Path):
        def change(config: dict) -> dict:
            config = with_provenance(config, folder)
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
        def bench(result: dict) -> dict:
            data = result["data"] | {"path": portable(result["data"]["path"])}
            added = {} if "git" in result else {"data_sha256": data_hash(data["path"]), "git": NOT_RECORDED}
            return result | {"data": data} | added
        changed += [path] if rewrite_json(path, bench) else []
    changed += profile_update_report() + compare_report()
    for path in changed:
        print(f"rewrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()

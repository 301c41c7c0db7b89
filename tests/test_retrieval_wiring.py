"""Retrieval as a program step (issue 21): what a retrieving program sends the model, what runs record and
resume, what a compiled program carries, and cold-start users answered by the task's fallback."""

import json
from dataclasses import replace

import dspy
import pytest

from guided_profile.cli import main
from guided_profile.datasets.example import Example
from guided_profile.errors import ConfigError
from guided_profile.evaluation import RunFolder
from guided_profile.programs import PersonalAdapter, build_program
from guided_profile.programs.export import load_compiled, save_compiled
from guided_profile.programs.retrieved import TODAY, Retrieval, program_inputs, retrieval_of
from guided_profile.runs import RunSettings, load_data, run_methods
from guided_profile.tasks import get_task

TASK = get_task("preference")
SHOPPER = Example(example_id="u1", user_id="u1",
                  history=("Garden hose nozzle, brass", "Glass beaker 250 ml", "Nitrile gloves, size M"),
                  query="Which of the following products is the user most likely to buy?", gold="A",
                  options=("Garden hose reel", "Wall clock", "Desk lamp", "Yoga mat"))
WHOLE = "1. Garden hose nozzle, brass\n2. Glass beaker 250 ml\n3. Nitrile gloves, size M"
RETRIEVED = "1. Garden hose nozzle, brass"  # the one item sharing words with an option; recent would keep item 3


def prompts(method, lm, retrieval=None, example=SHOPPER):
    """The user messages the fake model received, and the prediction."""
    program = build_program(method, TASK, retrieval=retrieval)
    start = len(lm.engine_impl.requests)
    with dspy.context(lm=lm, adapter=PersonalAdapter()):
        prediction = program(**program_inputs(program, TASK, example))
    return [r["user"] for r in lm.engine_impl.requests[start:]], prediction


@pytest.mark.parametrize("method", ["dg-pc", "pg", "gpg", "gpg:pc+g+pp"])
def test_a_retrieving_program_changes_only_the_history_it_sees(fake_lm, method):
    before, plain = prompts(method, fake_lm)
    after, retrieving = prompts(method, fake_lm, Retrieval("bm25", k=1))
    assert len(before) == len(after) and all(WHOLE in p for p in before if "History (" in p)
    assert [p.replace(WHOLE, RETRIEVED) for p in before] == after
    assert "retrieval" not in plain
    assert retrieving.retrieval == {"retriever": {"name": "bm25", "k1": 1.5, "b": 0.75}, "k": 1, "steps": "all",
                                    "kept": [0], "cut": False}


@pytest.mark.parametrize("steps,digest,answer", [("digest", RETRIEVED, WHOLE), ("answer", WHOLE, RETRIEVED)])
def test_the_switch_gives_the_digestion_and_the_final_step_different_items(fake_lm, steps, digest, answer):
    seen, _ = prompts("gpg", fake_lm, Retrieval("bm25", k=1, steps=steps))
    # Each history block ends with a blank line, so "ITEMS\n\n" is the whole block (RETRIEVED starts WHOLE).
    for prompt, items in ((seen[0], digest), (seen[1], digest), (seen[-1], answer)):  # digestion, profile, answer
        other = RETRIEVED if items == WHOLE else WHOLE
        assert f"{items}\n\n" in prompt and f"{other}\n\n" not in prompt


def test_the_character_cut_comes_after_retrieval(fake_lm):
    task = get_task("preference", max_history_chars=30)
    program = build_program("dg-pc", task, retrieval=Retrieval("recent", k=2))
    with dspy.context(lm=fake_lm, adapter=PersonalAdapter()):
        prediction = program(**program_inputs(program, task, SHOPPER))
    assert prediction.retrieval["kept"] == [1, 2] and prediction.retrieval["cut"]  # 2 kept, then cut to 1
    assert "1. Nitrile gloves, size M" in fake_lm.engine_impl.requests[-1]["user"]
    assert "beaker" not in fake_lm.engine_impl.requests[-1]["user"]


def test_without_a_retriever_nothing_changes():
    assert not TODAY.active and not Retrieval("none").active and Retrieval(steps="digest") == TODAY
    assert retrieval_of(build_program("gpg", TASK, retrieval=TODAY)) is None
    assert program_inputs(build_program("gpg", TASK), TASK, SHOPPER) == TASK.inputs(SHOPPER)
    assert set(TASK.inputs(SHOPPER)) == {"history", "question", "options"}  # what committed records compare


@pytest.mark.parametrize("settings,needle", [
    ({"retriever": "bm25"}, "needs k"), ({"retriever": "bm42", "k": 2}, "unknown retriever"),
    ({"retriever": "bm25", "k": 2, "retriever_options": {"k3": 1}}, "takes no setting"),
    ({"retriever": "recent", "k": 0}, "at least 1"), ({"k": 2, "retrieval_steps": "profile"}, "steps must be"),
    ({"retriever": "dense", "k": 2, "retriever_options": {"cache_path": "/tmp/e.sqlite"}}, "'cache_path' is not a run"),
])
def test_bad_retrieval_settings_are_refused_before_any_work(settings, needle):
    with pytest.raises(ConfigError, match=needle):
        RunSettings.resolve("preference", **settings)


def test_retrieval_round_trips_through_a_run_config_and_old_configs_resume(tmp_path):
    settings = RunSettings.resolve("preference", lm="fake", split="all", limit=2, retriever="bm25", k=2,
                                   retriever_options={"k1": 1.2}, cache=False)
    result = run_methods(settings, ["dg-pc"], out=tmp_path / "run", log=lambda _: None)
    assert result.config["retrieval"] == {"retriever": {"name": "bm25", "k1": 1.2, "b": 0.75}, "k": 2,
                                          "steps": "all"}
    assert Retrieval.from_dict(result.config["retrieval"]) == settings.retrieval
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert all(len(r["retrieval"]["kept"]) == 2 and set(r["inputs"]) == {"history", "question", "options"}
               for r in records)
    with pytest.raises(ConfigError, match="different retrieval"):
        run_methods(replace(settings, k=3), ["dg-pc"], out=tmp_path / "run", log=lambda _: None)
    old = {"task": "preference", "split": "test", "seed": 0, "lm": {}, "data": "sample:amazon_sample",
           "task_options": {}, "answer_mode": "score", "rotations": 4, "methods": ["gpg"]}  # made before retrieval
    RunFolder.open(tmp_path / "old", old)
    RunFolder.open(tmp_path / "old", old | {"retrieval": TODAY.to_dict(), "methods": ["gpg"]})  # today's resumes it
    with pytest.raises(ConfigError, match="different retrieval"):
        RunFolder.open(tmp_path / "old", old | {"retrieval": Retrieval("bm25", k=2).to_dict()})


def test_a_compiled_program_carries_its_retrieval(tmp_path, fake_lm):
    retrieval = Retrieval("bm25", k=1, steps="digest")
    program = build_program("gpg", TASK, retrieval=retrieval)
    payload = save_compiled(tmp_path / "p.json", program, TASK, {})
    assert payload["retrieval"] == retrieval.to_dict()
    loaded, _ = load_compiled(tmp_path / "p.json", TASK)
    assert retrieval_of(loaded) == retrieval
    assert "retrieval" not in save_compiled(tmp_path / "q.json", build_program("gpg", TASK), TASK, {})
    assert retrieval_of(load_compiled(tmp_path / "q.json", TASK)[0]) is None


def test_cold_start_users_are_answered_by_the_fallback_in_a_row_of_their_own(tmp_path):
    settings = RunSettings.resolve("preference", lm="fake", split="all", cache=False,
                                   task_options={"min_history_items": 9})
    task = settings.make_task()
    examples = load_data(task, "sample").examples
    cold = sum(task.is_cold_start(ex) for ex in examples)
    assert 0 < cold < len(examples)
    result = run_methods(settings, ["dg-pc", "gpg"], out=tmp_path / "run", log=lambda _: None)
    row = result.summaries["cold-start:dg-no-pc"]
    assert row["n"] == cold and result.summaries["gpg"]["n"] == result.summaries["dg-pc"]["n"] == len(examples) - cold
    assert "cold-start:dg-no-pc" in result.text_table() and "cold-start:dg-no-pc" in result.config["methods"]
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    fallback = [r for r in records if r["method"] == "cold-start:dg-no-pc"]
    assert len(fallback) == cold and {r["example_id"] for r in fallback} == {
        ex.example_id for ex in examples if task.is_cold_start(ex)}
    assert "| cold-start:dg-no-pc |" in (tmp_path / "run" / "table.md").read_text()


def test_empty_histories_join_the_data_only_when_asked(tmp_path):
    folder = tmp_path / "lamp"
    folder.mkdir()
    questions = [{"id": "1", "input": "Paraphrase the following tweet without any explanation before or after it: "
                  "hello there", "profile": [{"id": "a", "text": "hi all!!"}]},
                 {"id": "2", "input": "hello world", "profile": []}]
    (folder / "x_questions.json").write_text(json.dumps(questions))
    (folder / "x_outputs.json").write_text(json.dumps({"task": "LaMP_7", "golds": [
        {"id": "1", "output": "hey there!!"}, {"id": "2", "output": "HELLO world"}]}))
    default, stats = get_task("paraphrase").load(folder)
    assert [ex.example_id for ex in default] == ["1"] and stats["empty_profile"] == 1
    task = get_task("paraphrase", include_empty_history=True)
    kept, stats = task.load(folder)
    assert [ex.example_id for ex in kept] == ["1", "2"] and stats["empty_profile"] == 1 and stats["built"] == 2
    assert task.is_cold_start(kept[1]) and not task.is_cold_start(kept[0])


def test_bm25_with_k_2_end_to_end_through_the_command_line(tmp_path, capsys, fake_calls):
    args = ["run", "--task", "preference", "--lm", "fake", "--split", "all", "--no-progress", "--no-store",
            "--methods", "gpg", "--retriever", "bm25", "--k", "2", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["retrieval"]["retriever"]["name"] == "bm25" and config["retrieval"]["k"] == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(len(r["retrieval"]["kept"]) == 2 for r in records)
    digestions = [p for p in fake_calls if "reply with only the guidance" in p.lower()]
    assert digestions and all("\n3. " not in p for p in digestions)  # two items in every history shown
    calls = len(fake_calls)
    assert main(args) == 0 and len(fake_calls) == calls  # resumed: nothing asked again
    capsys.readouterr()
    assert main([*args[:-4], "--k", "3", "--out", str(tmp_path / "run")]) == 2
    assert "different retrieval" in capsys.readouterr().err


def test_an_optimized_program_keeps_its_retrieval_and_runs_with_it(tmp_path, capsys):
    compiled = tmp_path / "tuned.json"
    assert main(["optimize", "--task", "preference", "--optimizer", "copro", "--option", "breadth=2", "--option",
                 "depth=1", "--lm", "fake", "--no-cache", "--retriever", "bm25", "--k", "2", "--train-limit", "3",
                 "--dev-limit", "3", "--confirm-fraction", "0", "--out", str(compiled)]) == 0
    assert json.loads(compiled.read_text())["retrieval"]["k"] == 2
    assert main(["run", "--task", "preference", "--lm", "fake", "--split", "test", "--no-progress", "--no-store",
                 "--program", str(compiled), "--allow-overlap", "--out", str(tmp_path / "run")]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert records and all(len(r["retrieval"]["kept"]) == 2 for r in records)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    # the run's own retrieval (the task's default, 4 items; no method of its own here): the program kept its 2
    assert config["retrieval"]["k"] == 4


def test_a_retrieving_run_gets_its_own_default_folder():
    plain = RunSettings.resolve("preference", lm="fake", retriever="recent")
    assert str(plain.default_out()) == "runs/preference-test-sample-fake-score4-seed0"  # as before retrieval
    assert str(RunSettings.resolve("preference", lm="fake").default_out()).endswith("-seed0-bm25k4")  # its default
    assert str(replace(plain, retriever="bm25", k=8).default_out()).endswith("-seed0-bm25k8")
    assert str(replace(plain, k=4, retrieval_steps="digest").default_out()).endswith("-seed0-recentk4-digest")
    assert str(replace(plain, retriever="none").default_out()).endswith("-seed0-none")  # another history budget


@pytest.mark.parametrize(("task", "given", "expected"), [
    ("preference", {}, ("bm25", 4)),                            # the task's default, chosen on dev users
    ("preference", {"k": 8}, ("bm25", 8)),                      # its retriever with another k
    ("preference", {"retriever": "recent"}, ("recent", None)),  # the whole history, as the paper's runs
    ("paraphrase", {}, ("recent", None)),
    ("paraphrase", {"retriever": "dense", "k": 2}, ("dense", 2)),
])
def test_without_retriever_a_run_takes_its_task_default(task, given, expected):
    retrieval = RunSettings.resolve(task, lm="fake", **given).retrieval
    assert (retrieval.retriever, retrieval.k) == expected


def test_embeddings_are_kept_beside_the_profile_store_in_use(tmp_path):
    from guided_profile.programs.retrieved import _retriever
    from guided_profile.programs.stored import using_store
    from guided_profile.store import ProfileStore

    with using_store(ProfileStore(tmp_path / "mine" / "profiles.sqlite")):
        dense = _retriever(Retrieval("dense", k=2))
    assert dense.cache.path == tmp_path / "mine" / "embeddings.sqlite"
    assert _retriever(Retrieval("bm25", k=2)) is _retriever(Retrieval("bm25", k=2))  # built once per process


def test_dialogues_without_earlier_replies_join_only_when_asked(tmp_path):
    chats = [{"id": "a", "history": ["i love my two dogs"], "query": "any pets?", "response": "yes, two dogs!"},
             {"id": "b", "history": [], "query": "hi, how are you?", "response": "great, just back from a run"}]
    path = tmp_path / "chats.json"
    path.write_text(json.dumps(chats))
    default, stats = get_task("dialogue").load(path)
    assert [ex.example_id for ex in default] == ["a"] and stats["empty_history"] == 1
    kept, stats = get_task("dialogue", include_empty_history=True).load(path)
    assert [ex.example_id for ex in kept] == ["a", "b"] and stats["empty_history"] == 1 and stats["built"] == 2


def test_the_cut_column_counts_the_histories_the_steps_read(tmp_path):
    settings = RunSettings.resolve("preference", lm="fake", split="all", cache=False,
                                   task_options={"max_history_chars": 120})
    today = run_methods(settings, ["dg-pc"], out=tmp_path / "today", log=lambda _: None).summaries["dg-pc"]
    one = run_methods(replace(settings, k=1), ["dg-pc"], out=tmp_path / "one", log=lambda _: None).summaries["dg-pc"]
    both = run_methods(replace(settings, k=1, retrieval_steps="digest"), ["dg-pc"], out=tmp_path / "both",
                       log=lambda _: None).summaries["dg-pc"]
    assert today["history_cut"] == both["history_cut"] == 12 and one["history_cut"] == 0

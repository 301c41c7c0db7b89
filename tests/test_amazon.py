"""The Amazon purchase-preference builder: both file layouts, the paper's filters, and honest errors."""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest

from guided_profile.datasets.amazon import (
    QUERY,
    Item,
    build_preference_examples,
    detect_category_separator,
    load_amazon,
    split_category_path,
)
from guided_profile.datasets.example import Example, user_split
from guided_profile.errors import DataError, DataWarning

FIXTURES = Path(__file__).parent / "fixtures"
LCREC = FIXTURES / "amazon_lcrec"
MCAULEY = FIXTURES / "amazon_mcauley"
SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "amazon_sample"

# What the fixture users were written to exercise (see tests/fixtures/amazon_lcrec/Mini.inter.json).
EXPECTED_STATS = {
    "users": 8,
    "built": 4,
    "empty_history": 1,  # user 4
    "too_few_categories": 1,  # user 2: three categories
    "no_repeat_category": 1,  # user 3: bought item 0 twice, but no category with two distinct products
    "too_few_distractors": 1,  # user 5: only one never-bought category left, holding two products
}


@pytest.fixture(scope="module")
def lcrec() -> tuple[dict[str, Item], dict[str, list[str]]]:
    return load_amazon(LCREC)


@pytest.fixture(scope="module")
def mcauley() -> tuple[dict[str, Item], dict[str, list[str]]]:
    return load_amazon(MCAULEY)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------------------- parsing


def test_category_path_keeps_names_with_comma_space() -> None:
    real = "Industrial & Scientific,Fasteners,Collated Fasteners,Staples"
    assert split_category_path(real) == (
        "Industrial & Scientific",
        "Fasteners",
        "Collated Fasteners",
        "Staples",
    )
    assert split_category_path("Industrial & Scientific,Tapes, Adhesives & Sealants,Tapes,Masking Tape") == (
        "Industrial & Scientific",
        "Tapes, Adhesives & Sealants",
        "Tapes",
        "Masking Tape",
    )
    assert split_category_path("") == ()
    assert Item("x", ("Industrial & Scientific",)).category(1) is None


def test_lcrec_loads_ids_as_strings_and_tolerates_missing_categories(lcrec) -> None:
    catalog, histories = lcrec
    assert len(catalog) == 34
    assert all(isinstance(i, str) for h in histories.values() for i in h)
    assert histories["0"][:3] == ["0", "4", "8"]
    assert catalog["4"].category(1) == "Lab, Safety & Cleaning"
    assert catalog["29"].categories == ()  # "categories": ""
    assert catalog["33"].categories == ()  # no "categories" field at all
    assert catalog["30"].categories == ("Industrial & Scientific",)


def test_both_layouts_load_to_the_same_catalog_and_histories(lcrec, mcauley) -> None:
    (cat_a, hist_a), (cat_b, hist_b) = lcrec, mcauley
    assert sorted(cat_a.values(), key=repr) == sorted(cat_b.values(), key=repr)
    # The reviews file is scrambled; sorting by review time must restore the LC-Rec order.
    titles_a = {f"AMINIUSER{u}": [cat_a[i].title for i in h] for u, h in hist_a.items() if h}
    titles_b = {u: [cat_b[i].title for i in h] for u, h in hist_b.items()}
    assert titles_a == titles_b


def test_mcauley_gzip_files_are_read(tmp_path: Path, mcauley) -> None:
    d = tmp_path / "gz"
    d.mkdir()
    for src in MCAULEY.iterdir():
        (d / (src.name + ".gz")).write_bytes(gzip.compress(src.read_bytes()))
    assert load_amazon(d) == mcauley


# ---------------------------------------------------------------------------------------- building


def test_filter_counts_for_each_reason(lcrec, mcauley) -> None:
    examples, stats = build_preference_examples(*lcrec)
    assert stats == EXPECTED_STATS
    assert [ex.user_id for ex in examples] == ["0", "1", "6", "7"]
    _, stats_b = build_preference_examples(*mcauley)
    assert stats_b == {**EXPECTED_STATS, "users": 7, "empty_history": 0}  # no reviews, no reviewer


def test_thresholds_are_parameters(lcrec) -> None:
    _, stats = build_preference_examples(*lcrec, min_categories=3)
    assert stats["too_few_categories"] == 0 and stats["built"] == 5
    _, stats = build_preference_examples(*lcrec, category_level=0)  # everything is "Industrial & Scientific"
    assert stats["too_few_categories"] == 7 and stats["built"] == 0


@pytest.mark.parametrize("seed", range(8))
def test_examples_are_well_formed(lcrec, seed: int) -> None:
    catalog, histories = lcrec
    examples, stats = build_preference_examples(catalog, histories, seed=seed, source="mini")
    assert examples and len(examples) == stats["built"]  # the checks below run on every built user
    for ex in examples:
        original = histories[ex.user_id]
        user_categories = {catalog[i].category(1) for i in original} - {None}
        gold_title = ex.meta["gold_title"]
        assert ex.query == QUERY and ex.example_id == ex.user_id and ex.meta["source"] == "mini"
        # gold letter points at the held-out product, which the user really bought in that category
        assert ex.options["ABCD".index(ex.gold)] == gold_title == catalog[ex.meta["gold_item"]].title
        assert ex.meta["gold_item"] in original
        assert catalog[ex.meta["gold_item"]].category(1) == ex.meta["category"]
        # ... and is gone from the history (user 6 bought it twice, and again under a second id)
        assert not any(line.startswith(gold_title) for line in ex.history)
        assert len(ex.history) == sum(catalog[i].title != gold_title for i in original)
        # distractors come from categories the user never bought from, with four distinct titles
        assert len(set(ex.options)) == 4 and len(ex.meta["distractor_items"]) == 3
        for item_id in ex.meta["distractor_items"]:
            assert catalog[item_id].category(1) not in user_categories
            assert catalog[item_id].title in ex.options


def test_distractor_titles_are_distinct_and_not_already_bought() -> None:
    bought = {f"b{k}": Item(f"bought {k}", ("Top", f"cat{k // 2}")) for k in range(10)}  # 5 categories
    dups = {f"d{k}": Item("Same listing", ("Top", "other")) for k in range(20)}
    echo = {"e": Item("bought 0", ("Top", "other"))}  # a never-bought category, but a title the user has
    history = {"u": list(bought)}
    catalog = {**bought, **dups, **echo, "x": Item("Unique one", ("Top", "other"))}
    examples, stats = build_preference_examples(catalog, history)
    assert stats["too_few_distractors"] == 1 and not examples  # only two usable titles exist
    catalog["y"] = Item("Unique two", ("Top", "else"))
    for seed in range(5):
        (ex,), _ = build_preference_examples(catalog, history, seed=seed)
        assert sorted(set(ex.options) - {ex.meta["gold_title"]}) == [
            "Same listing",
            "Unique one",
            "Unique two",
        ]


def test_history_lists_titles_only_by_default_and_categories_on_request(lcrec) -> None:
    (user0, *_), _ = build_preference_examples(*lcrec)
    assert "Digital Caliper, 6 Inch" in user0.history
    assert not any("category" in line for ex in build_preference_examples(*lcrec)[0] for line in ex.history)
    shown, _ = build_preference_examples(*lcrec, show_categories=True)
    assert "Digital Caliper, 6 Inch (category: Test, Measure & Inspect)" in shown[0].history
    assert "Assorted Rubber Bands" in shown[0].history  # no category: title only, still shown
    # The variant changes what the history shows, nothing else.
    assert [(e.options, e.gold, e.meta) for e in shown] == [
        (e.options, e.gold, e.meta) for e in build_preference_examples(*lcrec)[0]]


def test_the_question_claims_no_time_order() -> None:
    assert "next" not in QUERY and "buy" in QUERY


def _many_users(n_users: int) -> tuple[dict[str, Item], dict[str, list[str]]]:
    """A catalog of 8 categories x 6 products, and `n_users` who each bought from the first five."""
    catalog = {f"{c}-{k}": Item(f"product {c}-{k}", ("Top", f"cat{c}")) for c in range(8) for k in range(6)}
    histories = {f"user{u}": [f"{c}-{(u + c) % 6}" for c in range(5)] + [f"0-{(u + 1) % 6}"] for u in range(n_users)}
    return catalog, histories


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_gold_positions_are_balanced_in_every_split_and_every_prefix_of_four(seed: int) -> None:
    examples, stats = build_preference_examples(*_many_users(300), seed=seed)
    assert stats["built"] == 300
    for split in ("train", "dev", "test"):
        golds = [ex.gold for ex in examples if user_split(ex.user_id, seed) == split]
        for end in range(4, len(golds) + 1, 4):
            assert Counter(golds[:end]) == dict.fromkeys("ABCD", end // 4), (split, end)
        assert all(ex.options["ABCD".index(ex.gold)] == ex.meta["gold_title"] for ex in examples)


def test_same_seed_same_examples_and_other_users_do_not_matter(lcrec) -> None:
    catalog, histories = lcrec
    first, _ = build_preference_examples(catalog, histories, seed=3)
    again, _ = build_preference_examples(dict(reversed(catalog.items())), histories, seed=3)
    assert first == again and [e.meta for e in first] == [e.meta for e in again]
    # Another user set leaves a user's products alone; only the gold's position follows its rank.
    (alone,), _ = build_preference_examples(catalog, {"6": histories["6"]}, seed=3)
    (same,) = [ex for ex in first if ex.user_id == "6"]
    assert (alone.history, sorted(alone.options), alone.meta) == (same.history, sorted(same.options), same.meta)


def test_different_seed_changes_some_pick(lcrec) -> None:
    a, _ = build_preference_examples(*lcrec, seed=0)
    b, _ = build_preference_examples(*lcrec, seed=1)
    assert [(e.user_id, e.options, e.gold) for e in a] != [(e.user_id, e.options, e.gold) for e in b]


def test_distractor_order_is_shuffled() -> None:
    examples, stats = build_preference_examples(*load_amazon(SAMPLE))
    assert stats["built"] == stats["users"] == 12  # the committed sample is built to pass every filter
    assert len({ex.gold for ex in examples}) > 1
    orders = {tuple(sorted(ex.meta["distractor_items"])) != ex.meta["distractor_items"] for ex in examples}
    assert orders == {True, False}
    assert all(isinstance(ex, Example) and len(ex.options) == 4 for ex in examples)


# ------------------------------------------------------------------------------------------ errors


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    d = _copy(LCREC, tmp_path)
    (d / "Mini.item.json").write_text('{"0": {"title": "a",\n "categories": }\n}')
    with pytest.raises(DataError, match=r"Mini\.item\.json.*line 2"):
        load_amazon(d)

    d = _copy(MCAULEY, tmp_path / "m")
    lines = (d / "reviews_Mini.json").read_text().splitlines()
    lines[2] = lines[2][:-5]
    (d / "reviews_Mini.json").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"reviews_Mini\.json.*line 3"):
        load_amazon(d)


def test_missing_field_names_the_record(tmp_path: Path) -> None:
    d = _copy(LCREC, tmp_path)
    items = json.loads((d / "Mini.item.json").read_text())
    del items["7"]["title"]
    (d / "Mini.item.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match=r"Mini\.item\.json, record '7'.*'title'"):
        load_amazon(d)

    d = _copy(MCAULEY, tmp_path / "m")
    with (d / "reviews_Mini.json").open("a") as fh:
        fh.write(json.dumps({"reviewerID": "AX", "asin": "B0MINI0001"}) + "\n")
    with pytest.raises(DataError, match=r"reviews_Mini\.json, record 'AX'.*unixReviewTime"):
        load_amazon(d)


def test_unknown_item_names_file_user_and_item(tmp_path: Path) -> None:
    d = _copy(LCREC, tmp_path)
    (d / "Mini.inter.json").write_text(json.dumps({"0": [0, 1], "u9": [2, 999]}))
    with pytest.raises(DataError, match=r"Mini\.inter\.json.*'u9'.*'999'"):
        load_amazon(d)

    d = _copy(MCAULEY, tmp_path / "m")
    with (d / "reviews_Mini.json").open("a") as fh:
        fh.write(json.dumps({"reviewerID": "AX", "asin": "B0NOPE", "unixReviewTime": 1}) + "\n")
    with pytest.raises(DataError, match=r"reviews_Mini\.json.*'AX'.*'B0NOPE'"):
        load_amazon(d)


@pytest.mark.parametrize(("layout", "name"), [(LCREC, "Mini.item.json"), (MCAULEY, "meta_Mini.json")])
def test_non_utf8_file_is_a_data_error(tmp_path: Path, layout: Path, name: str) -> None:
    d = _copy(layout, tmp_path)
    data = (d / name).read_bytes()
    (d / name).write_bytes(data.replace(b"Hex Bolt", b"H\xe9x Bolt", 1))
    with pytest.raises(DataError, match=rf"{name.replace('.', r'.')}.*not UTF-8"):
        load_amazon(d)


def test_broken_gzip_is_a_data_error(tmp_path: Path) -> None:
    shutil.copy(MCAULEY / "meta_Mini.json", tmp_path / "meta_Mini.json")
    (tmp_path / "reviews_Mini.json.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 50)[:40])
    with pytest.raises(DataError, match=r"reviews_Mini\.json\.gz"):
        load_amazon(tmp_path)


def test_unrecognised_directory_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"X\.item\.json \+ X\.inter\.json.*meta_X\.json"):
        load_amazon(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        load_amazon(tmp_path / "notes.txt")
    shutil.copy(LCREC / "Mini.item.json", tmp_path / "Mini.item.json")
    with pytest.raises(DataError, match="pairs"):
        load_amazon(tmp_path)


# ------------------------------------------------------------------------------ category separators


def _with_separator(src: Path, tmp_path: Path, rewrite) -> Path:
    """A copy of the LC-Rec fixture whose category strings are rewritten by `rewrite(path) -> str`."""
    d = _copy(src, tmp_path)
    items = json.loads((d / "Mini.item.json").read_text())
    for record in items.values():
        if record.get("categories"):
            record["categories"] = rewrite(record["categories"])
    (d / "Mini.item.json").write_text(json.dumps(items))
    return d


def _comma_space(path: str) -> str:
    return ", ".join(split_category_path(path))


def test_detect_separator_per_file() -> None:
    assert detect_category_separator(["Top,Lab, Safety & Cleaning,Gloves"]) == ","
    assert detect_category_separator(["Top, Lab, Gloves", "Top, Fasteners"]) == ", "
    assert detect_category_separator(["Top", ""]) == ","
    assert detect_category_separator(["Top,Lab", "Top, Fasteners"]) == "mixed"
    assert split_category_path("Top, Lab, Gloves", "mixed") == split_category_path("Top,Lab,Gloves", "mixed")
    assert split_category_path("Top, Lab, Gloves", ", ") == ("Top", "Lab", "Gloves")
    assert split_category_path("Top | Lab", " | ") == ("Top", "Lab")


def test_comma_space_export_builds_the_same_examples(tmp_path: Path) -> None:
    # In the ", " form a name cannot hold ", " itself: both copies get names without it.
    def names_without_comma(path: str) -> list[str]:
        return [level.replace(", ", " and ") for level in split_category_path(path)]

    plain = _with_separator(LCREC, tmp_path / "plain", lambda p: ",".join(names_without_comma(p)))
    spaced = _with_separator(LCREC, tmp_path / "spaced", lambda p: ", ".join(names_without_comma(p)))
    a, stats_a = build_preference_examples(*load_amazon(spaced))
    b, stats_b = build_preference_examples(*load_amazon(plain))
    assert stats_a == stats_b == EXPECTED_STATS
    assert a == b


def _without_comma_space(path: str) -> list[str]:
    return [level.replace(", ", " and ") for level in split_category_path(path)]


def test_a_file_mixing_both_forms_splits_each_string_by_its_own_and_says_so(tmp_path: Path) -> None:
    count = {"n": 0}

    def two_thirds_spaced(path: str) -> str:
        count["n"] += 1
        return (", " if count["n"] % 3 else ",").join(_without_comma_space(path))

    plain = _with_separator(LCREC, tmp_path / "plain", lambda p: ",".join(_without_comma_space(p)))
    mixed = _with_separator(LCREC, tmp_path / "mixed", two_thirds_spaced)
    with pytest.warns(DataWarning, match=r"Mini.item.json: some category strings join their levels by ',' and "):
        loaded = load_amazon(mixed)
    assert build_preference_examples(*loaded) == build_preference_examples(*load_amazon(plain))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_preference_examples(*load_amazon(LCREC))  # the fixture as it is: no warning


def test_levels_a_set_separator_leaves_unsplit_are_named_with_the_option(tmp_path: Path) -> None:
    spaced = _with_separator(LCREC, tmp_path, _comma_space)
    with pytest.warns(DataWarning, match=r"category_separator=', '"):
        build_preference_examples(*load_amazon(spaced, category_separator=","), source=str(spaced))


def test_separator_option_overrides_detection(tmp_path: Path) -> None:
    spaced = _with_separator(LCREC, tmp_path, _comma_space)
    catalog, _ = load_amazon(spaced, category_separator=",")
    assert catalog["0"].categories[0].startswith("Industrial & Scientific, ")  # one level: as asked
    catalog, _ = load_amazon(spaced, category_separator=", ")
    assert catalog["0"].categories[:2] == ("Industrial & Scientific", "Fasteners")


# ----------------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(("name", "text", "key"), [
    ("Mini.item.json", '{"0": {"title": "a", "categories": "T,A"}, "0": {"title": "b", "categories": "T,B"}}', "'0'"),
    ("Mini.inter.json", '{"u1": [0], "u2": [1], "u1": [2]}', "'u1'"),
])
def test_duplicate_keys_are_refused_with_the_key_named(tmp_path: Path, name: str, text: str, key: str) -> None:
    d = _copy(LCREC, tmp_path)
    (d / name).write_text(text)
    with pytest.raises(DataError, match=rf"{name.replace('.', r'.')}.*key {key} appears twice"):
        load_amazon(d)

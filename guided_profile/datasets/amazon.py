"""Amazon purchase preference: the product-choice task of Guided Profile Generation (Zhang et al. 2024).

A user's purchase history is shown as product titles; one product the user really bought is held out
and hidden among three products from categories the user never bought from; the program must pick the
held-out one.  As in the paper, the history names products only: inferring their categories is the
digest step's job, so printing them (`show_categories=True`) is a labelled variant, not the default.

Two on-disk layouts are read into one in-memory shape, so the task builder never cares where the data
came from:

* the LC-Rec layout (`X.item.json` + `X.inter.json`), which is what the shared copy of the data uses;
* the original McAuley files (a reviews file and a `meta_X.json` file, both JSON lines, optionally
  gzipped), which is what people download from the Amazon reviews site.

Every problem with the input surfaces as a `DataError` naming the file (and line or record), because a
raw `KeyError` deep inside a run tells the person holding the data nothing they can fix.
"""

from __future__ import annotations

import ast
import json
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guided_profile import json_text
from guided_profile.datasets.example import Example, option_letters, user_split
from guided_profile.datasets.io import read_json, text_lines
from guided_profile.errors import ConfigError, DataError, DataWarning

# The held-out product is a random one of a category the user bought from twice (the paper's rule), not
# the latest purchase: the question claims no time order.
QUERY = "Which of the following products is the user most likely to buy?"
N_DISTRACTORS = 3

# Skip reasons, in the order they are checked; every key is always present in the stats dict so that
# reports can be compared across runs without guarding for missing keys.
STAT_KEYS = (
    "users",
    "built",
    "empty_history",
    "too_few_categories",
    "no_repeat_category",
    "too_few_distractors",
)

# Category paths are joined by "," with no space after it, while single names may contain ", "
# ("Tapes, Adhesives & Sealants"): only a comma NOT followed by a space separates levels.  Other
# exports join levels by ", " instead; `detect_category_separator` tells the two apart per file.
_PATH_SEP = re.compile(r",(?! )")
AUTO_SEPARATOR = "auto"
MIXED_SEPARATORS = "mixed"  # detected: some strings join levels by ",", others by ", ": each split by its own

_EXPECTED_LAYOUTS = (
    "a directory holding either X.item.json + X.inter.json (LC-Rec layout) "
    "or meta_X.json[.gz] + one reviews .json[.gz] file (McAuley JSON lines)"
)


@dataclass(frozen=True)
class Item:
    """One product: its title and its category path, most general level first."""

    title: str
    categories: tuple[str, ...] = ()

    def category(self, level: int) -> str | None:
        """The category name at `level`, or None when the path is shorter (or that level is blank)."""
        if 0 <= level < len(self.categories) and self.categories[level]:
            return self.categories[level]
        return None


Catalog = dict[str, Item]
Histories = dict[str, list[str]]


def split_category_path(path: str, separator: str = ",") -> tuple[str, ...]:
    """Split an LC-Rec category string into its levels.

    With the separator "," (the shared data's form) only a comma not followed by a space separates
    levels, so names that contain ", " stay whole; any other separator (", " in other exports) is
    split on literally.  Blank levels are kept (as "") rather than dropped so that a stray ",," never
    shifts the levels below it up by one and silently changes which name counts as "the second level".
    """
    if not path.strip():
        return ()
    if separator == MIXED_SEPARATORS:
        separator = "," if _PATH_SEP.search(path) else ", "
    levels = _PATH_SEP.split(path) if separator == "," else path.split(separator)
    return tuple(level.strip() for level in levels)


def detect_category_separator(paths: Iterable[str]) -> str:
    """"," when some path has a comma without a following space (the levels cannot be joined by ", "
    then) and none has ", " alone, ", " when some path has ", " and none a bare comma, `MIXED_SEPARATORS`
    when both occur (a file merged from two exports: each string is split by its own form; a single
    level whose name holds ", " does not occur in the "," exports we know), else ","."""
    paths = list(paths)
    bare = any(_PATH_SEP.search(path) for path in paths)
    spaced = any(", " in path and not _PATH_SEP.search(path) for path in paths)
    return MIXED_SEPARATORS if bare and spaced else ", " if spaced else ","


def load_amazon(path: Path, category_separator: str = AUTO_SEPARATOR) -> tuple[Catalog, Histories]:
    """Read a directory in either supported layout into (catalog, histories).

    The layout is detected from the file names so that a user can point `--data` at whatever they
    downloaded; anything ambiguous (two data sets in one directory) is refused rather than guessed.
    `category_separator` joins the levels of LC-Rec category strings ("auto": detected per file).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, f"not a directory; expected {_EXPECTED_LAYOUTS}")
    lcrec = _find_lcrec_files(path)
    if lcrec is not None:
        return load_lcrec(*lcrec, category_separator=category_separator)
    mcauley = _find_mcauley_files(path)
    if mcauley is not None:
        return load_mcauley(*mcauley)
    present = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
    raise DataError(path, f"expected {_EXPECTED_LAYOUTS}; found {present}")


def load_lcrec(item_file: Path, inter_file: Path,
               category_separator: str = AUTO_SEPARATOR) -> tuple[Catalog, Histories]:
    """Read the LC-Rec layout: {item id: {title, categories, ...}} and {user id: [item ids]}.

    Item ids in the interaction file are often ints while the keys of the item file are strings
    (JSON keys always are), so both are normalised to str.  A key given twice in either file is
    refused (JSON parsers keep the last one silently, which would drop a product or a history).
    """
    item_file, inter_file = Path(item_file), Path(inter_file)
    raw_items = read_json(item_file, unique_keys=True)
    if not isinstance(raw_items, dict):
        raise DataError(item_file, "expected a JSON object {item id: {title, categories, ...}}")
    for key, record in raw_items.items():
        if not isinstance(record, dict):
            raise DataError(item_file, "expected an object with 'title' and 'categories'", record=key)
    if category_separator == AUTO_SEPARATOR:
        category_separator = detect_category_separator(
            r["categories"] for r in raw_items.values() if isinstance(r.get("categories"), str))
        if category_separator == MIXED_SEPARATORS:
            warnings.warn(DataWarning(
                f"{item_file}: some category strings join their levels by ',' and others by ', ' (a merged "
                "export?); each is split by its own form. --task-option category_separator=... sets one "
                "for the whole file"), stacklevel=2)
    catalog: Catalog = {
        str(key): Item(title=_title(item_file, key, record),
                       categories=_categories(item_file, key, record.get("categories"), category_separator))
        for key, record in raw_items.items()
    }

    raw_inter = read_json(inter_file, unique_keys=True)
    if not isinstance(raw_inter, dict):
        raise DataError(inter_file, "expected a JSON object {user id: [item ids in time order]}")
    histories: Histories = {}
    for user, sequence in raw_inter.items():
        if not isinstance(sequence, list):
            raise DataError(inter_file, "expected a list of item ids", record=user)
        items: list[str] = []
        for raw_id in sequence:
            item_id = _item_id(inter_file, user, raw_id)
            if item_id not in catalog:
                raise DataError(
                    inter_file,
                    f"user {user!r} names item {item_id!r}, which is not in {item_file.name}",
                    record=user,
                )
            items.append(item_id)
        histories[str(user)] = items
    return catalog, histories


def load_mcauley(reviews_file: Path, meta_file: Path) -> tuple[Catalog, Histories]:
    """Read the original McAuley files: reviews and product metadata, both JSON lines (maybe gzipped).

    A history is a reviewer's products sorted by review time (ties keep file order, so the result
    is deterministic).  Both metadata versions are accepted: 2018 (`category`: list of names) and
    2014 (`categories`: list of paths, of which the first is used; those files are Python literals
    rather than strict JSON, so each line falls back to `ast.literal_eval`).
    """
    reviews_file, meta_file = Path(reviews_file), Path(meta_file)
    catalog: Catalog = {}
    for lineno, record in _iter_json_lines(meta_file):
        asin = record.get("asin")
        if not isinstance(asin, str) or not asin:
            raise DataError(meta_file, f"line {lineno}: missing required field 'asin'")
        if asin in catalog:  # the 2018 metadata repeats some products verbatim; the first one wins
            continue
        raw_categories = record.get("category")
        if not raw_categories:
            raw_categories = record.get("categories")
        catalog[asin] = Item(
            title=_title(meta_file, asin, record, where=f"line {lineno}: "),
            categories=_categories(meta_file, asin, raw_categories),
        )

    events: dict[str, list[tuple[int, int, str]]] = {}
    for lineno, record in _iter_json_lines(reviews_file):
        missing = [name for name in ("reviewerID", "asin", "unixReviewTime") if name not in record]
        user = record.get("reviewerID")
        if missing:
            raise DataError(
                reviews_file,
                f"line {lineno}: missing required field(s) {', '.join(repr(m) for m in missing)}",
                record=user,
            )
        user = str(user)
        asin = str(record["asin"])
        when = _review_time(reviews_file, lineno, user, record["unixReviewTime"])
        if asin not in catalog:
            raise DataError(
                reviews_file,
                f"line {lineno}: user {user!r} names item {asin!r}, which is not in {meta_file.name}",
                record=user,
            )
        events.setdefault(user, []).append((when, lineno, asin))
    histories = {user: [asin for _, _, asin in sorted(evs)] for user, evs in events.items()}
    return catalog, histories


def _find_lcrec_files(directory: Path) -> tuple[Path, Path] | None:
    """The (item, inter) pair of the one LC-Rec data set in `directory`, or None if there is none."""
    items = {p.name[: -len(".item.json")]: p for p in directory.glob("*.item.json") if p.is_file()}
    inters = {p.name[: -len(".inter.json")]: p for p in directory.glob("*.inter.json") if p.is_file()}
    if not items and not inters:
        return None
    common = sorted(items.keys() & inters.keys())
    if not common:
        have = ", ".join(sorted(p.name for p in [*items.values(), *inters.values()]))
        raise DataError(
            directory, f"LC-Rec files must come in pairs X.item.json + X.inter.json; found {have}"
        )
    if len(common) > 1:
        raise DataError(directory, f"holds several LC-Rec data sets ({', '.join(common)}); point at one")
    return items[common[0]], inters[common[0]]


def _find_mcauley_files(directory: Path) -> tuple[Path, Path] | None:
    """The (reviews, meta) pair of McAuley files in `directory`, or None if there is no meta file."""
    json_files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.name.endswith((".json", ".json.gz"))
    )
    metas = [p for p in json_files if p.name.startswith("meta_")]
    reviews = [p for p in json_files if not p.name.startswith("meta_")]
    if not metas:
        return None
    if len(metas) > 1:
        raise DataError(directory, f"holds several meta files ({', '.join(p.name for p in metas)}); keep one")
    if len(reviews) != 1:
        found = ", ".join(p.name for p in reviews) or "none"
        raise DataError(
            directory, f"expected exactly one reviews .json[.gz] file next to {metas[0].name}; found {found}"
        )
    return reviews[0], metas[0]


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file, gzipped or not."""
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        record = _parse_line(path, lineno, line)
        if not isinstance(record, dict):
            raise DataError(path, f"line {lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def _parse_line(path: Path, lineno: int, line: str) -> Any:
    """One JSON-lines record; the 2014 metadata's Python-literal lines are accepted as a fallback."""
    try:
        return json_text.loads(line)
    except json.JSONDecodeError as exc:
        if line.lstrip().startswith("{"):
            try:
                return ast.literal_eval(line.strip())
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                pass
        raise DataError(path, f"line {lineno}: invalid JSON at column {exc.colno}: {exc.msg}") from exc


def _title(path: Path, record_id: object, record: Mapping[str, Any], where: str = "") -> str:
    if "title" not in record:
        raise DataError(path, f"{where}missing required field 'title'", record=record_id)
    title = record["title"]
    if not isinstance(title, str):
        raise DataError(
            path, f"{where}field 'title' should be a string, got {type(title).__name__}", record_id
        )
    return title.strip()


def _categories(path: Path, record_id: object, value: Any, separator: str = ",") -> tuple[str, ...]:
    """A category path from any of the shapes seen in the wild: "a,b,c", [a, b, c], [[a, b, c], ...]."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):
        return split_category_path(value, separator)
    if isinstance(value, list):
        if isinstance(value[0], list):  # 2014 metadata: several paths, the first is the main one
            value = value[0]
        if all(isinstance(level, str) for level in value):
            return tuple(level.strip() for level in value)
    raise DataError(path, f"category path should be a string or a list of strings, got {value!r}", record_id)


def _item_id(path: Path, user: object, raw: Any) -> str:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise DataError(path, f"item ids should be strings or integers, got {raw!r}", record=user)
    return str(raw)


def _review_time(path: Path, lineno: int, user: str, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    raise DataError(path, f"line {lineno}: 'unixReviewTime' should be an integer, got {raw!r}", record=user)


def build_preference_examples(
    catalog: Mapping[str, Item],
    histories: Mapping[str, Sequence[str]],
    *,
    seed: int = 0,
    category_level: int = 1,
    min_categories: int = 5,
    show_categories: bool = False,
    source: str = "",
) -> tuple[list[Example], dict[str, int]]:
    """Turn purchase histories into 4-option "which product?" questions, one per eligible user.

    Follows the paper: keep users who bought from at least `min_categories` categories, pick a
    category they bought at least two distinct products from, hold a random one of those out, and hide
    it among three products from categories the user never touched.  The history lists the other
    products' titles, oldest first (with `show_categories`, each followed by its category: a variant
    that hands the model what the digest step should infer).  Every random draw comes from an rng
    seeded by (seed, user id), so a user's products never change when other users are added, removed
    or reordered; only the gold's position does, which cycles A, B, C, D over each split's users in
    order (`place_gold_cyclically`), so every split, and every prefix of it in steps of four, holds
    each letter equally often and no constant answer beats chance.  Returns the examples in the
    order of `histories` and counts of why users were skipped.
    """
    if category_level < 0:
        raise ConfigError(f"category_level must be >= 0, got {category_level}")
    if min_categories < 0:
        raise ConfigError(f"min_categories must be >= 0, got {min_categories}")

    stats = dict.fromkeys(STAT_KEYS, 0)
    category_of = {item_id: item.category(category_level) for item_id, item in catalog.items()}
    # Products that can be shown as an option: they need a category (to know the user never bought
    # from it) and a non-blank title (to be shown at all).  Sorted once, so sampling never depends
    # on dict order.
    by_category: dict[str, list[str]] = {}
    for item_id in sorted(catalog):
        category = category_of[item_id]
        if category is not None and catalog[item_id].title:
            by_category.setdefault(category, []).append(item_id)
    pools = _Pools(catalog, category_of, by_category, sorted(by_category))

    examples: list[Example] = []
    for user_id, history in histories.items():
        stats["users"] += 1
        if not history:
            stats["empty_history"] += 1
            continue
        for item_id in history:
            if item_id not in catalog:
                raise DataError(
                    source or "histories", f"names item {item_id!r}, which is not in the catalog", user_id
                )
        result = _build_one(str(user_id), history, pools, seed=seed, min_categories=min_categories,
                            show_categories=show_categories, source=source)
        if isinstance(result, str):
            stats[result] += 1
        else:
            stats["built"] += 1
            examples.append(result)
    _warn_if_levels_look_unsplit(catalog, stats, source)
    return place_gold_cyclically(examples, seed), stats


def place_gold_cyclically(examples: Sequence[Example], seed: int) -> list[Example]:
    """Each example with its gold moved to position k mod 4, k its rank among the users of its split.

    The examples arrive with the gold first; the distractors' order stays as drawn.  Splitting is by
    user (`user_split`), so the balance holds for whichever split a run evaluates, from its first user on.
    """
    rank: Counter[str] = Counter()
    placed = []
    for example in examples:
        split = user_split(example.user_id, seed)
        position = rank[split] % len(example.options)
        rank[split] += 1
        gold_title, *distractors = example.options
        options = (*distractors[:position], gold_title, *distractors[position:])
        placed.append(replace(example, options=options, gold=option_letters(len(options))[position]))
    return placed


@dataclass(frozen=True)
class _Pools:
    """What every user's draw reads: the catalog, each item's category, and the items per category."""

    catalog: Mapping[str, Item]
    category_of: Mapping[str, str | None]
    by_category: Mapping[str, list[str]]
    ordered_categories: Sequence[str]


def _build_one(user_id: str, history: Sequence[str], pools: _Pools, *, seed: int, min_categories: int,
               show_categories: bool, source: str) -> Example | str:
    """One user's question (gold listed first), or the name of the reason it cannot be built."""
    catalog, category_of = pools.catalog, pools.category_of
    user_categories = {category_of[i] for i in history} - {None}
    if len(user_categories) < min_categories:
        return "too_few_categories"

    # Distinct products per category, counted by title: two catalog ids with the same title are the
    # same product to the reader, and holding out one while the other stays in the history would
    # leak the answer.
    titles_in: dict[str, set[str]] = {}
    for item_id in history:
        category, title = category_of[item_id], catalog[item_id].title
        if category is not None and title:
            titles_in.setdefault(category, set()).add(title)
    repeat_categories = sorted(c for c, titles in titles_in.items() if len(titles) >= 2)
    if not repeat_categories:
        return "no_repeat_category"

    rng = random.Random(f"{seed}:{user_id}")
    category = rng.choice(repeat_categories)
    gold_id = rng.choice(sorted({i for i in history if category_of[i] == category and catalog[i].title}))
    gold_title = catalog[gold_id].title
    distractors = _draw_distractors(rng, history, user_categories, pools)
    if distractors is None:
        return "too_few_distractors"
    rng.shuffle(distractors)

    remaining = [i for i in history if i != gold_id and catalog[i].title != gold_title]
    return Example(
        example_id=user_id,
        user_id=user_id,
        history=tuple(_history_line(catalog[i], category_of[i] if show_categories else None) for i in remaining),
        query=QUERY,
        gold="A",
        options=(gold_title, *(catalog[i].title for i in distractors)),
        meta={
            "category": category,
            "gold_title": gold_title,
            "gold_item": gold_id,
            "distractor_items": tuple(distractors),
            "source": source,
        },
    )


def _draw_distractors(rng: random.Random, history: Sequence[str], user_categories: set[str | None],
                      pools: _Pools) -> list[str] | None:
    """Three products of categories the user never bought from, with titles new to the user and to
    each other; None when there are not enough.  A partial Fisher-Yates shuffle of the pool, stopping
    at the first three usable titles: O(pool) to copy, O(1) per draw, and deterministic given the rng."""
    pool: list[str] = []
    for other in pools.ordered_categories:
        if other not in user_categories:
            pool.extend(pools.by_category[other])
    seen_titles = {pools.catalog[i].title for i in history}
    distractors: list[str] = []
    for i in range(len(pool)):
        j = rng.randrange(i, len(pool))
        pool[i], pool[j] = pool[j], pool[i]
        title = pools.catalog[pool[i]].title
        if title in seen_titles:
            continue
        seen_titles.add(title)
        distractors.append(pool[i])
        if len(distractors) == N_DISTRACTORS:
            return distractors
    return None


def _warn_if_levels_look_unsplit(catalog: Mapping[str, Item], stats: Mapping[str, int], source: str) -> None:
    """Say so when most users fail the category filter while some category strings stayed one level
    that holds ", ": the likely cause is a file that joins levels by ", " (in part, or where the
    separator was set by hand), which reads as one category per product."""
    with_history = stats["users"] - stats["empty_history"]
    unsplit = sum(len(item.categories) == 1 and ", " in item.categories[0] for item in catalog.values())
    if unsplit and stats["too_few_categories"] * 2 > with_history:
        warnings.warn(DataWarning(
            f"{source or 'data'}: {stats['too_few_categories']} of {with_history} users have too few categories, "
            f"and {unsplit} products' category strings read as one level containing ', ': the file may join "
            "levels by ', '; try --task-option category_separator=', '"), stacklevel=3)


def _history_line(item: Item, category: str | None) -> str:
    return f"{item.title} (category: {category})" if category is not None else item.title

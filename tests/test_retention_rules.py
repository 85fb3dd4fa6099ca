"""The pure rules of retention.py: ages, the one order of "most recently pushed", which
version a fallback restores, and what a prune keeps."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tycho_async.errors import UsageError
from tycho_async.retention import Pushed, newest_first, parse_age, pick_fallback, plan_prune

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- parse_age -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("2w", 14 * 86400), ("90m", 5400),
    ("45s", 45), ("0d", 0), ("1d12h", 36 * 3600), (" 7D ", 7 * 86400), ("1w 2d", 9 * 86400),
])
def test_parse_age_examples(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", " ", "d", "30", "30x", "-1d", "1.5d", "d30", "30dd",
                                  "thirty days", "1d-2h", "1e3s"])
def test_parse_age_refuses_anything_else_as_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_age(text)
    assert caught.value.exit_code == 2
    assert "30d" in caught.value.message  # the message shows how to write one


amounts = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(UNITS))),
                   min_size=1, max_size=4)


@given(amounts)
def test_parse_age_sums_every_amount(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_age(text) == sum(n * UNITS[u] for n, u in parts)
    assert parse_age(text.upper()) == parse_age(text)


AGE = re.compile(r"(?:\d+ *[smhdw] *)+")


@given(st.text(alphabet="0123456789smhdwxyz .-", max_size=12))
def test_parse_age_accepts_exactly_numbers_with_units(text: str) -> None:
    if AGE.fullmatch(text.strip()):
        assert parse_age(text) >= 0
    else:
        with pytest.raises(UsageError):
            parse_age(text)


# -- newest_first ----------------------------------------------------------------------------

def test_newest_first_by_time_then_natural_version() -> None:
    versions = [Pushed("1.9", 100, 1), Pushed("1.10", 100, 1), Pushed("2.0", 50, 1),
                Pushed("0.1", 200, 1), Pushed("1.2", 100, 1)]
    assert [p.version for p in newest_first(versions)] == ["0.1", "1.10", "1.9", "1.2", "2.0"]


def _natural(version: str) -> tuple[tuple[int, object], ...]:
    """Natural order, independently: digit runs compare as numbers, text as text."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.findall(r"\d+|\D+", version))


versions_st = st.lists(st.tuples(st.from_regex(r"[a-c]-(0|[1-9][0-9]{0,2})", fullmatch=True),
                                 st.integers(0, 3)),
                       unique_by=lambda item: item[0], max_size=12)


@given(versions_st)
def test_newest_first_is_a_permutation_in_order(items: list[tuple[str, int]]) -> None:
    pushed = [Pushed(v, float(t), 0) for v, t in items]
    ordered = newest_first(pushed)
    assert sorted(ordered, key=lambda p: p.version) == sorted(pushed, key=lambda p: p.version)
    for newer, older in itertools.pairwise(ordered):
        assert newer.modified >= older.modified
        if newer.modified == older.modified and "-" in newer.version:
            same_prefix = newer.version.split("-")[0] == older.version.split("-")[0]
            if same_prefix:  # within one prefix the numbers decide: 10 after 9
                assert _natural(newer.version) > _natural(older.version)


# -- pick_fallback ---------------------------------------------------------------------------

def test_pick_fallback_prefers_the_newest_then_the_higher_version() -> None:
    listing = [Pushed("k-10", 100, 1), Pushed("k-9", 100, 1), Pushed("k-2", 50, 1),
               Pushed("a-1", 10, 1)]
    assert pick_fallback(listing, ["k-"]) == ("k-10", "k-")  # a tie: natural order, not text
    newer = [*listing, Pushed("k-3", 300, 1)]
    assert pick_fallback(newer, ["k-"]) == ("k-3", "k-")  # the newest, however numbered
    assert pick_fallback(newer, ["z-", "a-", "k-"]) == ("a-1", "a-")  # the first prefix wins
    assert pick_fallback(newer, ["z-"]) is None
    assert pick_fallback([], ["k-"]) is None


@given(versions_st, st.lists(st.sampled_from(["a-", "b-", "c-", "a-1", "b-2", "z-"]),
                             min_size=1, max_size=4))
def test_pick_fallback_is_the_newest_of_the_first_prefix_that_has_any(
        items: list[tuple[str, int]], prefixes: list[str]) -> None:
    pushed = [Pushed(v, float(t), 0) for v, t in items]
    picked = pick_fallback(pushed, prefixes)
    for prefix in prefixes:
        matching = [p for p in pushed if p.version.startswith(prefix)]
        if matching:
            assert picked is not None and picked[1] == prefix
            chosen = next(p for p in matching if p.version == picked[0])
            assert chosen.modified == max(p.modified for p in matching)
            assert chosen == newest_first(matching)[0]
            return
    assert picked is None


# -- plan_prune ------------------------------------------------------------------------------

def test_plan_prune_examples() -> None:
    listing = [Pushed(str(v), float(v), 1) for v in range(1, 7)]  # 6 is the newest
    plan = plan_prune(listing, keep=2, latest="1", older_than=None, now=100.0)
    assert [p.version for p in plan.keep] == ["6", "5", "1"]
    assert [p.version for p in plan.delete] == ["4", "3", "2"]
    young = plan_prune(listing, keep=0, latest=None, older_than=96.5, now=100.0)
    assert [p.version for p in young.delete] == ["3", "2", "1"]  # 4 is 96 s old: kept
    assert plan_prune([], keep=3, latest="x", older_than=None, now=0.0).delete == []
    everything = plan_prune(listing, keep=0, latest=None, older_than=None, now=100.0)
    assert len(everything.delete) == 6 and everything.keep == []
    with pytest.raises(UsageError):
        plan_prune(listing, keep=-1, latest=None, older_than=None, now=100.0)


@given(versions_st, st.integers(0, 6), st.one_of(st.none(), st.integers(0, 3)),
       st.one_of(st.none(), st.integers(0, 4)))
def test_plan_prune_keeps_the_newest_and_latest_and_deletes_only_the_old(
        items: list[tuple[str, int]], keep: int, latest_index: int | None,
        older_than: int | None) -> None:
    pushed = [Pushed(v, float(t), 0) for v, t in items]
    latest = pushed[latest_index].version if latest_index is not None and \
        latest_index < len(pushed) else None
    now = 5.0
    plan = plan_prune(pushed, keep=keep, latest=latest,
                      older_than=None if older_than is None else float(older_than), now=now)
    kept, deleted = {p.version for p in plan.keep}, {p.version for p in plan.delete}
    assert kept | deleted == {p.version for p in pushed} and not kept & deleted
    newest = newest_first(pushed)
    assert {p.version for p in newest[:keep]} <= kept
    if latest is not None:
        assert latest in kept
    expected = {p.version for p in newest[keep:] if p.version != latest
                and (older_than is None or now - p.modified >= older_than)}
    assert deleted == expected
    assert plan.delete == [p for p in newest if p.version in deleted]  # newest first

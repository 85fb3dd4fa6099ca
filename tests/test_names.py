"""Names, versions, local file names and version order, over generated inputs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tycho_async.errors import UnsafeRemoteData, UsageError
from tycho_async.names import (
    check_localname_arg,
    check_package,
    check_remote_localname,
    is_valid_segment,
    sort_versions,
    version_key,
)

valid_segment = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,40}", fullmatch=True)


@given(valid_segment)
def test_valid_segments_are_accepted(name: str) -> None:
    assert check_package(name) == name


@given(st.text(min_size=0, max_size=30))
def test_any_accepted_name_is_a_single_safe_segment(name: str) -> None:
    if is_valid_segment(name):
        assert "/" not in name and "\\" not in name and name not in {".", ".."}
        assert not name.startswith(".") and "\x00" not in name
    else:
        with pytest.raises(UsageError):
            check_package(name)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/b", "a\\b", "", ".", "..",
                                  "nul\x00byte", "new\nline"])
def test_hostile_localnames_are_refused(name: str) -> None:
    with pytest.raises(UnsafeRemoteData):
        check_remote_localname("pkg", name)
    with pytest.raises(UsageError):
        check_localname_arg(name)


@pytest.mark.parametrize("name", [None, 3, ["a"], {"a": 1}])
def test_localname_of_the_wrong_type_is_refused(name: object) -> None:
    with pytest.raises(UnsafeRemoteData):
        check_remote_localname("pkg", name)


@given(st.text(min_size=1, max_size=50))
def test_accepted_localnames_stay_inside_outdir(name: str) -> None:
    from pathlib import Path

    try:
        check_localname_arg(name)
    except UsageError:
        return
    base = Path("/srv/out")
    assert (base / name).resolve().parent == base


def test_natural_order_examples() -> None:
    given_order = ["2.0", "1.10", "1.9", "1.0", "1.0rc1", "1.0a1", "1.0.post1", "1.0.1",
                   "0.1", "1.0b2", "1.0.dev3"]
    assert sort_versions(given_order) == ["0.1", "1.0.dev3", "1.0a1", "1.0b2", "1.0rc1", "1.0",
                                          "1.0.post1", "1.0.1", "1.9", "1.10", "2.0"]


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)),
                min_size=1, max_size=30))
def test_numeric_versions_sort_like_tuples(triples: list[tuple[int, int, int]]) -> None:
    versions = [".".join(map(str, t)) for t in triples]
    assert sort_versions(versions) == [".".join(map(str, t)) for t in sorted(triples)]


@given(st.lists(valid_segment, max_size=20))
def test_order_is_total_and_stable(versions: list[str]) -> None:
    once = sort_versions(versions)
    assert sort_versions(list(reversed(versions))) == once
    assert [version_key(v) for v in once] == sorted(version_key(v) for v in versions)

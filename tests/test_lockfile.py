"""The lock file's format, pure: what is dumped reads back as the same lock, the same lock
dumps to the same bytes, and a hostile lock file is refused (exit 2) naming the entry,
before anything is asked of a store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.layout import PROOF, SIDECAR_SUFFIX
from tycho_async.lockfile import Lock, Locked, LockfileError, dump, parse
from tycho_async.names import localname_problem

SHA = "ab" * 32
SEGMENTS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._+-]{0,40}\Z")
LOCALNAMES = st.text(st.characters(codec="utf-8"), min_size=1,
                     max_size=60).filter(
    lambda name: localname_problem(name) is None and not name.endswith(SIDECAR_SUFFIX)
    and name != PROOF)
ETAGS = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40)


def entry(name: str, sha256: str | None = SHA) -> Locked:
    return Locked(name, "1.2", f"{name}.bin", 10, '"e1"', sha256=sha256)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(SEGMENTS, SEGMENTS, LOCALNAMES, ETAGS,
                          st.integers(0, 1 << 62), st.booleans()),
                max_size=6, unique_by=lambda row: row[0]))
def test_a_dumped_lock_reads_back_as_the_same_lock(rows: list[tuple[
        str, str, str, str, int, bool]]) -> None:
    lock = Lock("s3://bucket/prefix", [
        Locked(name, version, localname, size, etag, sha256=None if station else SHA)
        for name, version, localname, etag, size, station in rows])
    data = dump(lock)
    assert parse(data) == lock
    assert dump(parse(data)) == data  # byte-stable


def test_the_same_lock_dumps_to_the_same_bytes_whatever_the_order_given() -> None:
    a, b = entry("alpha"), entry("beta", sha256=None)
    first = dump(Lock("/srv/reg", [a, b]))
    assert first == dump(Lock("/srv/reg", [b, a]))
    text = first.decode()
    assert text.index('name = "alpha"') < text.index('name = "beta"')
    assert "version = 1\n" in text and 'registry = "/srv/reg"' in text


GOOD = b'''version = 1
[lock]
registry = "s3://b/p"

[[package]]
name = "tool"
version = "1.2"
localname = "tool.bin"
format = "file"
size = 10
sha256 = "''' + SHA.encode() + b'''"
etag = "\\"e1\\""
'''


@pytest.mark.parametrize(("change", "named"), [
    ((b'localname = "tool.bin"', b'localname = "../tool.bin"'), "localname"),
    ((b'localname = "tool.bin"', b'localname = "a/b"'), "localname"),
    ((b'localname = "tool.bin"', b'localname = ".."'), "localname"),
    ((b'name = "tool"', b'name = "../tool"'), "name"),
    ((b'name = "tool"', b'name = "-x"'), "name"),
    ((b"size = 10", b"size = -1"), "size"),
    ((b'sha256 = "', b'sha256 = "zz'), "sha256"),
    ((b"size = 10", b"size = 10\nextra = 1"), "unknown key 'extra'"),
    ((b'format = "file"', b'format = "zip"'), "format"),
])
def test_a_hostile_lock_is_refused_naming_the_entry(change: tuple[bytes, bytes],
                                                    named: str) -> None:
    assert parse(GOOD).packages[0].name == "tool"
    data = GOOD.replace(*change)
    assert data != GOOD
    with pytest.raises(LockfileError) as info:
        parse(data, "ci.lock")
    assert info.value.exit_code == 2
    assert "ci.lock: package #1" in info.value.message and named in info.value.message


def test_a_toml_bomb_of_nesting_is_refused() -> None:
    bomb = b"version = 1\nx = " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    with pytest.raises(LockfileError) as info:
        parse(bomb, "bomb.lock")
    assert info.value.exit_code == 2 and "bomb.lock" in info.value.message


def test_a_package_locked_twice_is_refused() -> None:
    twice = GOOD + GOOD[GOOD.index(b"[[package]]"):].replace(b'"1.2"', b'"1.3"')
    with pytest.raises(LockfileError, match="'tool' is locked twice"):
        parse(twice)

"""Tests of ``layout.py``, the tycho-station format as tychoreg reads and writes it (the
import layering once checked here is in test_imports.py, start-up in test_startup.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tycho_async.config import load_settings
from tycho_async.errors import IncompleteVersion, StoreError, TychoError, UnsafeRemoteData
from tycho_async.layout import (
    PackageMeta,
    Record,
    load_record,
    parse_meta,
)
from tycho_async.registry import Registry as Reg
from tycho_async.storage import open_store
from tycho_async.transfer import Engine
from tycho_async.transfer.engine import Expected

from .faults import FaultyStore
from .support import Registry

# -- layout.py: the typed Record and PackageMeta -----------------------------------------------

OURS = ("localname", "latest", "tychoreg")
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)
unknown = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in OURS), json_values,
                          max_size=3)
versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,11}", fullmatch=True)
SHA = "ab" * 32


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record as some client wrote it: complete, pending or deleting, with fields of
    clients newer or older than this one."""
    record: dict[str, Any] = draw(st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("state", "sha256", "size", "format")),
        json_values, max_size=3))
    kind = draw(st.sampled_from(["complete", "pending", "deleting"]))
    if kind != "pending":
        record.update(sha256=SHA, size=draw(st.integers(0, 2**40)))
    if kind != "complete":
        record["state"] = kind
    if draw(st.booleans()):
        record["format"] = "tar+zstd"
    return record


@st.composite
def tycho_jsons(draw: st.DrawFn) -> dict[str, Any]:
    """tycho.json as tycho-station (no section of ours) or tychoreg left it, with unknown
    keys before and after, and in our section."""
    meta: dict[str, Any] = draw(unknown)
    meta["localname"] = draw(st.text(min_size=1, max_size=12))
    meta["latest"] = draw(st.none() | versions)
    if draw(st.booleans()):
        section: dict[str, Any] = draw(st.dictionaries(
            st.text(max_size=6).filter(lambda k: k != "records"), json_values, max_size=2))
        section["records"] = draw(st.dictionaries(versions, records(), max_size=4))
        meta["tychoreg"] = section
    for key, value in draw(unknown).items():
        meta.setdefault(key, value)
    return meta


def _dumped(value: object) -> bytes:
    return json.dumps(value, indent=2).encode("utf-8")


@given(tycho_jsons())
def test_package_meta_round_trips_byte_for_byte(meta: dict[str, Any]) -> None:
    data = _dumped(meta)
    parsed = PackageMeta.parse("pkg", data)
    assert parsed.dump() == data
    assert (parsed.localname, parsed.latest) == (meta["localname"], meta["latest"])
    assert parsed.marked == ("tychoreg" in meta)
    copies = meta.get("tychoreg", {}).get("records", {})
    assert parsed.records == {v: Record.from_json(r) for v, r in copies.items()}
    assert parse_meta("pkg", data) == meta  # the dict layer reads the same


@given(tycho_jsons(), versions, records())
def test_a_rewrite_keeps_every_key_it_does_not_own(meta: dict[str, Any], version: str,
                                                   record: dict[str, Any]) -> None:
    parsed = PackageMeta.parse("pkg", _dumped(meta))
    parsed.records[version] = Record(record)
    parsed.latest = version
    again = json.loads(PackageMeta.parse("pkg", parsed.dump()).dump())
    section = meta.get("tychoreg", {})
    assert again == {**meta, "latest": version,
                     "tychoreg": {**section, "records": {**section.get("records", {}),
                                                         version: record}}}
    assert list(again)[:len(meta)] == list(meta)  # in their order


def test_a_tycho_station_package_is_left_as_it_was_until_a_record_is_added() -> None:
    data = b'{\n  "localname": "narf.tar.gz",\n  "latest": "1.0",\n  "owner": "ops"\n}'
    meta = PackageMeta.parse("narf", data)
    assert (meta.records, meta.marked, meta.dump()) == ({}, False, data)
    meta.mark()
    assert meta.marked and json.loads(meta.dump())["tychoreg"] == {"records": {}}
    assert PackageMeta.new("narf.tar.gz").dump() == _dumped({"localname": "narf.tar.gz",
                                                             "latest": None})
    odd = {"localname": "f", "latest": None, "tychoreg": {"records": ["not", "an object"]}}
    kept = PackageMeta.parse("p", _dumped(odd))
    assert kept.dump() == _dumped(odd)  # a section of another shape is kept while unused
    kept.records["1"] = Record({"sha256": SHA, "size": 1})
    assert json.loads(kept.dump())["tychoreg"] == {"records": {"1": {"sha256": SHA,
                                                                     "size": 1}}}


@given(records())
def test_a_record_round_trips_and_reads_as_the_dict_layer_reads_it(
        record: dict[str, Any]) -> None:
    data = _dumped(record)
    loaded = Record.load("pkg", "1", data)
    assert loaded.dump() == data and loaded.fields == record
    assert loaded.state == record.get("state", "ok")
    assert loaded.pending == (record.get("state") == "pending")
    assert loaded.format == record.get("format", "file")
    if loaded.state == "ok":
        assert loaded.expected("pkg", "1") == Expected(record["size"], sha256=SHA)
        assert loaded.sha256 == SHA


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "package 'pkg': tycho.json is not valid JSON"),
    (b"\xff", "package 'pkg': tycho.json is not valid JSON"),
    (b"[" * 100000, "package 'pkg': tycho.json is nested too deeply to read"),
    (b"[]", "package 'pkg': tycho.json is not a JSON object"),
    (b'{"latest": 1}', "package 'pkg': tycho.json 'latest' is not a string"),
    (b'{"localname": null}', "package 'pkg': tycho.json 'localname' is not a string"),
])
def test_a_malformed_tycho_json_is_refused_as_before(data: bytes, message: str) -> None:
    for parse in (PackageMeta.parse, parse_meta):
        with pytest.raises(UnsafeRemoteData) as caught:
            parse("pkg", data)
        assert caught.value.message == message and caught.value.exit_code == 3


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "pkg 1: its checksum record is unreadable"),
    (b"[" * 100000, "pkg 1: its checksum record is nested too deeply to read"),
    (b'"a string"', "pkg 1: its checksum record is malformed"),
])
def test_an_unreadable_record_is_refused_as_before(data: bytes, message: str) -> None:
    for load in (Record.load, load_record):
        with pytest.raises(UnsafeRemoteData) as caught:
            load("pkg", "1", data)
        assert caught.value.message == message


MALFORMED = "pkg 1: its checksum record is malformed"


@pytest.mark.parametrize(("copy", "error", "words"), [
    ({"state": "pending"}, IncompleteVersion, "its push was cut short"),
    ({"state": "deleting", "sha256": SHA, "size": 1}, IncompleteVersion, "is being deleted"),
    ({"sha256": SHA}, UnsafeRemoteData, MALFORMED),
    ({"sha256": SHA, "size": True}, UnsafeRemoteData, MALFORMED),
    ({"sha256": SHA, "size": "1"}, UnsafeRemoteData, MALFORMED),
    ({"sha256": SHA.upper(), "size": 1}, UnsafeRemoteData, MALFORMED),
    ({"sha256": SHA[:-1], "size": 1}, UnsafeRemoteData, MALFORMED),
    ("not an object", UnsafeRemoteData, MALFORMED),
    ([SHA, 1], UnsafeRemoteData, MALFORMED),
])
def test_a_record_that_cannot_be_trusted_is_refused_as_before(
        copy: object, error: type[TychoError], words: str) -> None:
    with pytest.raises(error) as caught:
        Record.from_json(copy).expected("pkg", "1")
    assert words in caught.value.message


def test_a_copy_of_another_shape_reads_as_an_empty_record_and_is_written_back_as_it_was(
        ) -> None:
    meta = {"localname": "f", "latest": None,
            "tychoreg": {"records": {"1": "junk", "2": {"sha256": SHA, "size": 2}}}}
    parsed = PackageMeta.parse("pkg", _dumped(meta))
    junk = parsed.records["1"]
    assert (junk.fields, junk.state, junk.format, junk.sha256) == ({}, "ok", "file", None)
    parsed.records["3"] = Record({"sha256": SHA, "size": 3})
    assert json.loads(parsed.dump())["tychoreg"]["records"] == {
        "1": "junk", "2": {"sha256": SHA, "size": 2}, "3": {"sha256": SHA, "size": 3}}


def test_what_a_push_writes_reads_back_as_the_same_bytes(registry: Registry) -> None:
    """The record object and tycho.json of a real push (a file, then a directory package
    beside it) parse and dump to the very bytes the registry wrote."""
    Path("f.bin").write_bytes(b"file bytes")
    Path("tree").mkdir()
    Path("tree", "a.txt").write_bytes(b"a")
    for package, source in (("pkg", "f.bin"), ("dir", "tree")):
        done = registry.cli("push", package, "1.0", source, "--promote-latest")
        assert done.exit_code == 0, done.stderr
        data = registry.get(f"{package}/tycho.json")
        record = registry.get(f"{package}/tycho_1.0.meta.json")
        assert data is not None and record is not None
        meta = PackageMeta.parse(package, data)
        assert meta.dump() == data and Record.load(package, "1.0", record).dump() == record
        assert meta.records["1.0"] == Record.load(package, "1.0", record)
        assert meta.records["1.0"].format == ("file" if source == "f.bin" else "tar+zstd")
        assert (meta.latest, meta.marked) == ("1.0", True)


def _cut(registry: Registry, method: str, fail_at: int,
         work: Callable[[Reg], Awaitable[object]]) -> None:
    """Run ``work`` on the registry's store failing its ``fail_at``-th ``method`` call."""
    async def main() -> None:
        settings = load_settings(str(registry.workdir / ".tychoreg.json"))
        async with open_store(settings.store) as store:
            faulty = FaultyStore(store)
            faulty.inject(method, *[None] * (fail_at - 1), StoreError("cut here"))
            with contextlib.suppress(TychoError):
                await work(Reg(Engine(faulty, settings.transfer), settings.outdir))

    anyio.run(main)


def test_the_records_a_push_and_a_deletion_write_are_the_ones_record_makes(
        registry: Registry) -> None:
    """The pending record of a push cut short after its upload, the full record of a
    push, and the mark of a deletion cut short, each as Record's constructors make it
    from the same values: the same bytes."""
    Path("f.bin").write_bytes(b"file bytes")
    assert registry.cli("push", "pkg", "1.0", "f.bin").exit_code == 0
    _cut(registry, "put_bytes", 3, lambda reg: reg.push("pkg", "2.0", Path("f.bin"),
                                                        promote=False))
    full_data = registry.get("pkg/tycho_1.0.meta.json")
    pending_data = registry.get("pkg/tycho_2.0.meta.json")
    assert full_data is not None and pending_data is not None
    full = Record.load("pkg", "1.0", full_data)
    pending = Record.load("pkg", "2.0", pending_data)
    fields = full.fields
    assert Record.complete(fields["sha256"], fields["size"], pushed_at=fields["pushed_at"],
                           tool=fields["tool"], localname="f.bin").dump() == full_data
    fields = pending.fields
    assert pending.pending and Record.reservation(
        tool=fields["tool"], started_at=fields["started_at"], localname="f.bin",
        push_id=fields["push_id"], holder=fields["holder"]).dump() == pending_data
    assert list(pending.renewed("later").fields)[-1] == "renewed_at"
    assert pending.renewed("later").renewed("later still").fields == {
        **pending.fields, "renewed_at": "later still"}
    _cut(registry, "delete", 1, lambda reg: reg.delete("pkg", ["1.0"]))
    marked_data = registry.get("pkg/tycho_1.0.meta.json")
    assert marked_data is not None
    marked = Record.load("pkg", "1.0", marked_data)
    assert marked.deleting and Record.deletion_mark(
        full, since=marked.fields["deleting_since"],
        by=marked.fields["deleted_by"]).dump() == marked_data
    assert PackageMeta.parse("pkg", registry.get("pkg/tycho.json") or b"").records[
        "1.0"] == marked
    assert Record.deletion_mark(pending, since="s", by="b").fields == {
        "state": "deleting", "deleting_since": "s", "deleted_by": "b"}

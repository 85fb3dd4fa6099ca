"""The signed statement: its exact bytes (the README's), read back only in that form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.errors import SignatureError
from tycho_async.layout import Record
from tycho_async.statement import SigFile, Statement

SHA = "ab" * 32
TREE = "cd" * 32
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)


def file_record(size: int = 5, localname: str = "tool.bin") -> Record:
    return Record.complete(SHA, size, pushed_at="2026-12-02T00:00:00+00:00", tool="t",
                           localname=localname)


def test_a_files_statement_is_the_readmes_bytes() -> None:
    statement = Statement.of("tool", "1.2", "tool.tar.gz", file_record(1048576))
    assert statement.data() == (b"tychoreg-statement-v1\npackage tool\nversion 1.2\n"
                                b"localname tool.tar.gz\nsha256 " + SHA.encode() +
                                b"\nsize 1048576\nformat file\n")


def test_a_directorys_statement_names_its_tree_when_the_record_does() -> None:
    full = Record.complete(SHA, 9, pushed_at="x", tool="t", localname="d.tar.zst",
                           extra={"format": "tar+zstd", "tree_sha256": TREE, "tree_size": 70})
    text = Statement.of("d", "1", "d.tar.zst", full).text()
    assert text.endswith(f"format tar+zstd\ntree_sha256 {TREE}\ntree_size 70\n")
    repaired = Record.complete(SHA, 9, pushed_at="x", tool="t", localname="d.tar.zst",
                               extra={"format": "tar+zstd"})
    assert Statement.of("d", "1", "d.tar.zst", repaired).text().endswith(
        "format tar+zstd\n")
    for made in (full, repaired):
        statement = Statement.of("d", "1", "d.tar.zst", made)
        assert Statement.parse("d", "1", statement.text()) == statement


@settings(max_examples=40)
@given(package=names, version=names, localname=names, size=st.integers(0, 1 << 50))
def test_every_statement_reads_back_as_itself(package: str, version: str, localname: str,
                                              size: int) -> None:
    statement = Statement.of(package, version, localname, file_record(size, localname))
    assert Statement.parse(package, version, statement.text()) == statement
    assert Statement.parse(package, version, statement.text()).digest() == statement.digest()


@pytest.mark.parametrize("change", [
    lambda t: t[:-1],  # no final newline
    lambda t: t + "extra x\n",  # a line more
    lambda t: t.replace("size 5", "size  5"),  # two spaces
    lambda t: t.replace("size 5", "size 05"),  # another spelling of the number
    lambda t: t.replace("\n", "\r\n"),
    lambda t: t.replace(SHA, SHA.upper()),
    lambda t: t.replace("format file", "format zip"),
    lambda t: t.replace("tychoreg-statement-v1", "tychoreg-statement-v2"),
    lambda t: "\n".join(reversed(t.split("\n"))),  # another order
])
def test_any_other_spelling_is_refused(change: object) -> None:
    text = Statement.of("tool", "1.0", "tool.bin", file_record()).text()
    assert callable(change)
    with pytest.raises(SignatureError, match="malformed"):
        Statement.parse("tool", "1.0", change(text))


def test_a_difference_names_the_field() -> None:
    one = Statement.of("tool", "1.0", "tool.bin", file_record())
    other = Statement.of("tool", "2.0", "tool.bin", file_record())
    assert one.differs(other) == "version"
    assert one.differs(one) is None


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"statement": 1, "signatures": []}',
                                  b'{"statement": "s", "signatures": [1]}',
                                  b"x" * ((1 << 20) + 1)])
def test_a_signature_file_of_another_shape_is_refused(data: bytes) -> None:
    with pytest.raises(SignatureError):
        SigFile.parse("tool", "1.0", data)


def test_a_signature_file_keeps_keys_it_does_not_know() -> None:
    data = b'{"statement": "s", "signatures": [{"signature": "x"}], "later": [1]}'
    parsed = SigFile.parse("tool", "1.0", data)
    assert parsed.signatures[0].principal_hint == ""
    assert SigFile.parse("tool", "1.0", parsed.dump()).extra == {"later": [1]}

"""The background SHA-256: the same digest as hashlib, whatever the pieces, and bounded."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tycho_async.hashing import BackgroundSha256


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=5000), max_size=30), st.integers(1, 20_000))
def test_the_digest_is_hashlibs_whatever_the_pieces(pieces: list[bytes], limit: int) -> None:
    hasher = BackgroundSha256(limit=limit)
    try:
        for piece in pieces:
            hasher.update(piece)
            assert hasher._queued <= max(limit, len(piece))  # bounded: never more queued
        assert hasher.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    finally:
        hasher.close()


def test_close_without_a_digest_stops_the_worker() -> None:
    hasher = BackgroundSha256()
    hasher.update(b"x" * 1000)
    hasher.close()
    assert hasher._pool._shutdown

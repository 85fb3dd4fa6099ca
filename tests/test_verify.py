"""verify --repair (the registry's verify operation): a push cut short after
its upload is completed, on every backend."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .support import OLD, Registry, _pending, _pushed, write_file


def test_repair_completes_a_push_cut_short_after_its_upload(registry: Registry) -> None:
    _pushed(registry)
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("pkg/tycho_2.0.pkg", blob)
    registry.put("pkg/tycho_2.0.meta.json", _pending(OLD))
    repaired = registry.cli("verify", "pkg", "--version", "2.0", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert "completed a push" in repaired.stdout
    record = json.loads(registry.get("pkg/tycho_2.0.meta.json") or b"")
    assert record["sha256"] == hashlib.sha256(blob).hexdigest() and "state" not in record
    assert registry.meta("pkg")["tychoreg"]["records"]["2.0"] == record
    pulled = registry.cli("pull", "pkg", "--version", "2.0", "-o", "out.bin")
    assert pulled.exit_code == 0 and Path("out.bin").read_bytes() == blob


def test_repair_creates_tycho_json_for_a_new_package_cut_short(registry: Registry) -> None:
    blob = write_file(Path("g.bin"), 5000, seed=3)
    registry.put("new/tycho_1.0.pkg", blob)
    registry.put("new/tycho_1.0.meta.json", _pending(OLD, "g.bin"))
    repaired = registry.cli("verify", "new", "--version", "1.0", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert registry.meta("new")["localname"] == "g.bin"
    assert registry.cli("pull", "new", "--version", "1.0").exit_code == 0
    assert Path("tycho_packages/g.bin").read_bytes() == blob

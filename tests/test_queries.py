"""The read-only operations of the registry (queries): the probe of what a
store honours."""

from __future__ import annotations

import json

from .support import Registry


def test_info_probe_says_conditional_writes_are_honoured(registry: Registry) -> None:
    result = registry.cli("info", "--probe", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["conditional_writes"] == "honoured"
    assert registry.object_keys() == []

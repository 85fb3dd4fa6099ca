"""Tests of ``layout.py``, the tycho-station format as tychoreg reads and writes it (the
import layering once checked here is in test_imports.py, start-up in test_startup.py)."""

from __future__ import annotations

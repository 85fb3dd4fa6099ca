"""The defaults every layer may name without loading the config machinery: ``--help``
quotes them, and loads no settings (nor the storage and transfer types they hold)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG = ".tychoreg.json"
DEFAULT_OUTDIR = "tycho_packages"


def default_local_root() -> Path:
    """The registry used when none is named: a directory in the user's data directory."""
    from platformdirs import user_data_path  # only when that registry is used or shown

    return user_data_path("tychoreg", appauthor=False) / "registry"

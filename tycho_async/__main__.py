"""``python -m tycho_async``: the command line (``entry.main``: a warm locked pull, else
the full CLI)."""

from .entry import main

main()

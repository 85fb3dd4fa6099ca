"""``python -m tycho_async``: the command line (``cli.main``)."""

from .cli import main

main()

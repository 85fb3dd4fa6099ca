"""The benchmark harness: ``python benchmarks/run.py`` (see benchmarks/README.md).

A package so that its modules import one another as ``benchmarks.X`` and the unit tests
of its pure parts (tests/test_benchmarks.py) can import them too; it is not part of the
tychoreg wheel and pytest does not collect it.
"""

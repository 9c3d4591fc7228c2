"""Benchmarks (issue 5, speed and memory): ``python -m bench.run [--quick] [--only NAME ...]``.

Every figure is a ratio against a baseline measured in the same run, on the same machine and
the same kind of database, so that it means something on a busy machine. See bench/README.md.
"""

"""Fault harness: the Kafka path under SIGKILLs and dropped database connections (``python -m chaos.run``).

Findings (inputs or faults that break the product) are written up in ``chaos/FINDINGS.md``.
"""

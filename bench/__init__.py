"""Benchmarks of dlrpush; run with ``make bench`` (``python -m bench``)."""

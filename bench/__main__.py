"""``python -m bench``: the end-to-end throughput run."""

from bench.throughput import main

main()

"""Entry point for ``python -m dlrpush``."""

from dlrpush.cli import main

main()

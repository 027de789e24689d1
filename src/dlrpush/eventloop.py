"""What the commands run on: uvloop where it is installed, and a tuned garbage collector.

uvloop (libuv) runs the same asyncio programs with roughly a quarter less CPU per
network exchange than the stdlib loop here (docs/benchmarks.md); on a platform without
it the stdlib loop is only slower.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# The service makes and drops several small records per report (the report read from
# the API, the push item, the settlement of its push); reference counting frees them,
# but each counts towards the collector's next pass, and at CPython's default (a pass
# every 700 allocations, a full one whenever the long-lived heap grew by a quarter) a
# `ucloud` run on SQLite spent 1.34 s of the service's CPU in collections, 0.97 s of it
# in 24 full passes, all while holding the GIL. Objects alive at start (modules,
# settings) are moved out of the collector's sight, and it runs every 50,000
# allocations: 0.04 s in collections, `ucloud` on SQLite 40,242-48,872 ->
# 51,828-58,021 reports/s in three interleaved pairs, peak RSS unchanged
# (docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 20, 20)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)

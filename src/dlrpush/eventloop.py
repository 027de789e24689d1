"""Which event loop the commands run on: uvloop where it is installed.

uvloop (libuv) runs the same asyncio programs with roughly a quarter less CPU per
network exchange than the stdlib loop here (docs/benchmarks.md); on a platform without
it the stdlib loop is only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)

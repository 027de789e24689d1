"""When to push again: what one attempt's outcome means for its delivery, and retry schedules.

A schedule is the list of waits, in seconds, before each retry; its length is the number
of retries, so a delivery gets ``len(schedule) + 1`` attempts before it is ``failed``
(kept and replayable). The provider's contract is ``(1, 1, 1)``: retry every second,
four attempts at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dlrpush.errors import InvalidInput
from dlrpush.models import DeliveryState

MAX_RETRIES = 100
MAX_WAIT_S = 86400.0


class NextStep(NamedTuple):
    state: DeliveryState
    tries: int
    next_attempt_ms: int | None


def after_attempt(
    *, accepted: bool, tries_before: int, schedule: Sequence[float], now_ms: int
) -> NextStep:
    tries = tries_before + 1
    if accepted:
        return NextStep(DeliveryState.DELIVERED, tries, None)
    if tries_before < len(schedule):
        return NextStep(DeliveryState.PENDING, tries, now_ms + round(schedule[tries_before] * 1000))
    return NextStep(DeliveryState.FAILED, tries, None)


def exponential(*, first_s: float, factor: float, retries: int, cap_s: float) -> tuple[float, ...]:
    waits: list[float] = []
    wait = first_s
    for _ in range(retries):
        waits.append(min(wait, cap_s))
        # Repeated multiplication overflows to inf (then capped) where ** would raise.
        wait *= factor
    return validate_schedule(waits)


def validate_schedule(values: Sequence[object]) -> tuple[float, ...]:
    if len(values) > MAX_RETRIES:
        raise InvalidInput(
            f"retry schedule has {len(values)} waits; at most {MAX_RETRIES} allowed",
            field="retry_schedule_s",
        )
    waits: list[float] = []
    for i, v in enumerate(values):
        # bool is an int subclass, but True is no number of seconds; the range check also
        # rejects NaN and infinities, and compares huge ints without overflowing.
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= MAX_WAIT_S:
            raise InvalidInput(
                f"retry wait #{i + 1} is {repr(v)[:40]}; each must be a number of seconds "
                f"from 0 to {MAX_WAIT_S:g}",
                field="retry_schedule_s",
            )
        waits.append(float(v))
    return tuple(waits)

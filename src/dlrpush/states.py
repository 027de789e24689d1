"""The legal delivery state transitions, and how a report's state follows its deliveries.

``TRANSITIONS`` is the one table of what may happen to a delivery; anything not in it is
a programming error and ``transition`` raises ``ValueError``. A report's state is the
least advanced of its deliveries, or held/unmatched while it waits for its submission.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from dlrpush.models import DeliveryState, ReportState
from dlrpush.retry import NextStep


class Event(StrEnum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # the attempt failed and another is scheduled
    GAVE_UP = "gave_up"
    REPLAY = "replay"


_P, _D, _F = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.FAILED

TRANSITIONS: Mapping[tuple[DeliveryState, Event], DeliveryState] = MappingProxyType(
    {
        (_P, Event.ACCEPTED): _D,
        (_P, Event.RETRY): _P,
        (_P, Event.GAVE_UP): _F,
        (_F, Event.REPLAY): _P,
        (_D, Event.REPLAY): _P,
        (_P, Event.REPLAY): _P,
    }
)

_EVENT_FOR_STATE = {_D: Event.ACCEPTED, _P: Event.RETRY, _F: Event.GAVE_UP}
_RANK = {_P: 0, _F: 1, _D: 2}
_REPORT_STATE = {
    _P: ReportState.PENDING,
    _F: ReportState.FAILED,
    _D: ReportState.DELIVERED,
}


def transition(state: DeliveryState, event: Event) -> DeliveryState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"illegal delivery transition: {state} + {event}") from None


def event_for(step: NextStep) -> Event:
    return _EVENT_FOR_STATE[step.state]


def report_state(
    *, matched: bool, expired: bool, deliveries: Iterable[DeliveryState]
) -> ReportState:
    if not matched:
        return ReportState.UNMATCHED if expired else ReportState.HELD
    least = min(deliveries, key=_RANK.__getitem__, default=_P)
    return _REPORT_STATE[least]

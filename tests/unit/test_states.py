import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.models import DeliveryState, ReportState
from dlrpush.retry import after_attempt
from dlrpush.states import TRANSITIONS, Event, event_for, report_state, transition

P, D, F = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.FAILED

LEGAL = {
    (P, Event.ACCEPTED): D,
    (P, Event.RETRY): P,
    (P, Event.GAVE_UP): F,
    (F, Event.REPLAY): P,
    (D, Event.REPLAY): P,
    (P, Event.REPLAY): P,
}


def test_table_is_exactly_the_legal_transitions() -> None:
    assert dict(TRANSITIONS) == LEGAL


@pytest.mark.parametrize(("state", "event"), list(itertools.product(DeliveryState, Event)))
def test_transition_follows_table_and_refuses_the_rest(state: DeliveryState, event: Event) -> None:
    if (state, event) in LEGAL:
        assert transition(state, event) == LEGAL[(state, event)]
    else:
        with pytest.raises(ValueError, match="illegal"):
            transition(state, event)


def test_finished_deliveries_only_move_by_replay() -> None:
    for state, event in itertools.product((D, F), (Event.ACCEPTED, Event.RETRY, Event.GAVE_UP)):
        with pytest.raises(ValueError, match="illegal"):
            transition(state, event)


@pytest.mark.parametrize(
    ("accepted", "tries_before", "event"),
    [(True, 0, Event.ACCEPTED), (False, 0, Event.RETRY), (False, 3, Event.GAVE_UP)],
)
def test_event_for_retry_outcomes(accepted: bool, tries_before: int, event: Event) -> None:
    step = after_attempt(accepted=accepted, tries_before=tries_before, schedule=(1, 1, 1), now_ms=0)
    assert event_for(step) is event
    # The event applied to a pending delivery lands where retry says it should.
    assert transition(P, event_for(step)) is step.state


@pytest.mark.parametrize(
    ("matched", "expired", "deliveries", "expected"),
    [
        (False, False, [], ReportState.HELD),
        (False, False, [D], ReportState.HELD),
        (False, True, [], ReportState.UNMATCHED),
        (True, True, [D], ReportState.DELIVERED),
        (True, False, [], ReportState.PENDING),
        (True, False, [D, D], ReportState.DELIVERED),
        (True, False, [D, F], ReportState.FAILED),
        (True, False, [F, D, P], ReportState.PENDING),
    ],
)
def test_report_state(
    matched: bool, expired: bool, deliveries: list[DeliveryState], expected: ReportState
) -> None:
    got = report_state(matched=matched, expired=expired, deliveries=iter(deliveries))
    assert got is expected


@given(st.lists(st.sampled_from(DeliveryState), min_size=1))
def test_report_is_the_least_advanced_delivery(deliveries: list[DeliveryState]) -> None:
    got = report_state(matched=True, expired=False, deliveries=deliveries)
    order = [P, F, D]
    least = min(deliveries, key=order.index)
    assert got == ReportState(least.value)
    assert (got is ReportState.DELIVERED) == all(d is D for d in deliveries)

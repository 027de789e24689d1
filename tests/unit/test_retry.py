import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlrpush.errors import InvalidInput
from dlrpush.models import DEFAULT_RETRY_SCHEDULE_S, DeliveryState
from dlrpush.retry import NextStep, after_attempt, exponential, validate_schedule

NOW = 1_749_545_540_000
WAITS = st.floats(min_value=0, max_value=86400, allow_nan=False)
SCHEDULES = st.lists(WAITS, max_size=100).map(tuple)


def attempts_until_final(schedule: tuple[float, ...], now_ms: int) -> list[NextStep]:
    steps: list[NextStep] = []
    tries = 0
    while not steps or steps[-1].state is DeliveryState.PENDING:
        steps.append(
            after_attempt(accepted=False, tries_before=tries, schedule=schedule, now_ms=now_ms)
        )
        tries = steps[-1].tries
    return steps


def test_provider_default_is_four_attempts_one_second_apart() -> None:
    steps = attempts_until_final(DEFAULT_RETRY_SCHEDULE_S, NOW)
    assert [s.state for s in steps] == [DeliveryState.PENDING] * 3 + [DeliveryState.FAILED]
    assert [s.tries for s in steps] == [1, 2, 3, 4]
    assert [s.next_attempt_ms for s in steps] == [NOW + 1000] * 3 + [None]


@pytest.mark.parametrize("tries_before", [0, 2, 3, 50])
def test_acceptance_delivers_whenever_it_comes(tries_before: int) -> None:
    step = after_attempt(accepted=True, tries_before=tries_before, schedule=(1.0,), now_ms=NOW)
    assert step == NextStep(DeliveryState.DELIVERED, tries_before + 1, None)


def test_empty_schedule_fails_after_one_attempt() -> None:
    step = after_attempt(accepted=False, tries_before=0, schedule=(), now_ms=NOW)
    assert step == NextStep(DeliveryState.FAILED, 1, None)


def test_waits_follow_the_schedule_in_order() -> None:
    steps = attempts_until_final((0.5, 2.0, 0.001), NOW)
    assert [s.next_attempt_ms for s in steps] == [NOW + 500, NOW + 2000, NOW + 1, None]


@given(SCHEDULES, st.integers(min_value=0, max_value=2**53))
def test_attempts_until_failed_is_schedule_length_plus_one(
    schedule: tuple[float, ...], now_ms: int
) -> None:
    steps = attempts_until_final(schedule, now_ms)
    assert len(steps) == len(schedule) + 1
    assert steps[-1] == NextStep(DeliveryState.FAILED, len(schedule) + 1, None)
    for step in steps[:-1]:
        assert step.next_attempt_ms is not None
        assert step.next_attempt_ms >= now_ms


def test_exponential_grows_and_caps() -> None:
    assert exponential(first_s=1, factor=2, retries=6, cap_s=10) == (1, 2, 4, 8, 10, 10)
    assert exponential(first_s=1, factor=2, retries=0, cap_s=10) == ()


def test_exponential_huge_factor_stays_capped() -> None:
    waits = exponential(first_s=1, factor=1e300, retries=100, cap_s=3600)
    assert waits[0] == 1
    assert set(waits[1:]) == {3600}


def test_exponential_refuses_what_validation_refuses() -> None:
    with pytest.raises(InvalidInput):
        exponential(first_s=1, factor=2, retries=101, cap_s=10)


@pytest.mark.parametrize("values", [[], [1, 2.5, 0, 86400], (1.0,) * 100, [3]])
def test_valid_schedules(values: list[float]) -> None:
    assert validate_schedule(values) == tuple(float(v) for v in values)
    assert all(type(v) is float for v in validate_schedule(values))


@pytest.mark.parametrize(
    "values",
    [
        [True],
        [1, False],
        ["1"],
        [None],
        [-1],
        [86400.5],
        [math.nan],
        [math.inf],
        [10**400],
        [1.0] * 101,
    ],
)
def test_invalid_schedules(values: list[object]) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_schedule(values)
    assert err.value.field == "retry_schedule_s"


def test_invalid_schedule_message_points_at_the_entry() -> None:
    with pytest.raises(InvalidInput, match=r"#2 is True"):
        validate_schedule([1, True])

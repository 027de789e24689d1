"""The one error root of dlrpush and its few families.

Driver and HTTP errors are translated into these where they enter the code; delivery
outcomes are values (see ``models.Verdict``), never exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlrpush.models import PushItem


class DlrpushError(Exception):
    """Root of every error dlrpush raises on purpose."""


class ConfigError(DlrpushError):
    """A setting or command-line option is wrong; the message names it."""


class InvalidInput(DlrpushError):
    """Input from a user breaks a rule; ``field`` names where (``"0.phone"``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DlrpushError):
    """The named thing does not exist."""


class Conflict(DlrpushError):
    """The thing already exists."""


class StoreUnavailable(DlrpushError):
    """The store cannot be reached or is locked; callers may retry later."""


class ClaimedInPart(StoreUnavailable):
    """A claim leased and committed ``items``, then failed: they are the caller's to
    push, and more may be due (the claim did not come back short for want of work)."""

    def __init__(self, items: Sequence[PushItem], message: str) -> None:
        super().__init__(message)
        self.items = list(items)


class SettledInPart(StoreUnavailable):
    """A settle recorded its first ``recorded`` outcomes, then failed: a retry must
    record only the rest, or those attempts would be logged twice."""

    def __init__(self, recorded: int, message: str) -> None:
        super().__init__(message)
        self.recorded = recorded

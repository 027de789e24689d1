"""Wire formats, sans I/O: each protocol renders push requests and reads receivers' answers.

A protocol is a module-level object with ``name``, ``batched``, ``render()`` and
``verdict()``. The dispatcher never looks inside a body: adding a provider's format is
adding a module here and a line to ``PROTOCOLS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol as TypingProtocol

from dlrpush.catalogue import Catalogue
from dlrpush.errors import InvalidInput
from dlrpush.models import Endpoint, PushItem, PushRequest, Verdict


class Protocol(TypingProtocol):
    @property
    def name(self) -> str: ...

    @property
    def batched(self) -> bool:
        """True when one request carries many reports (up to ``endpoint.batch_max``)."""
        ...

    def render(
        self,
        items: Sequence[PushItem],
        endpoint: Endpoint,
        catalogue: Catalogue,
        now_ms: int,
    ) -> list[PushRequest]:
        """Requests carrying every item once, in order; ``now_ms`` is the push time."""
        ...

    def verdict(self, status: int, body: bytes, endpoint: Endpoint) -> Verdict:
        """Whether the receiver accepted the push, from its HTTP status and body."""
        ...


def _registry() -> dict[str, Protocol]:
    from dlrpush.protocols import innopaas, ucloud

    return {ucloud.PROTOCOL.name: ucloud.PROTOCOL, innopaas.PROTOCOL.name: innopaas.PROTOCOL}


PROTOCOLS: dict[str, Protocol] = _registry()


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise InvalidInput(f"unknown protocol {name!r}; known: {known}", "protocol") from None

"""Every store backend behind one fixture, so the same contract runs against each."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dlrpush.store import open_store
from dlrpush.store.base import Store


def _backends() -> list[str]:
    return ["sqlite"]


@pytest.fixture(params=_backends())
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/contract.db"
    else:  # pragma: no cover - added with the PostgreSQL backend
        url = os.environ["DLRPUSH_TEST_PG_URL"]
    st = open_store(url)
    await st.open()
    try:
        yield st
    finally:
        await st.close()

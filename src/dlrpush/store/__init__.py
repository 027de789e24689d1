"""Store backends, chosen by URL: ``sqlite:///path/to.db`` (the default) or ``postgresql://…``."""

from __future__ import annotations

from urllib.parse import urlsplit

from dlrpush.errors import ConfigError
from dlrpush.store.base import Store


def open_store(url: str, *, sqlite_synchronous: str = "FULL") -> Store:
    """Build the backend for ``url`` (not yet connected: call ``await store.open()``)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from dlrpush.store.sqlite import SqliteStore

        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"store URL {url!r}: expected sqlite:///path/to/file.db")
        return SqliteStore(path, synchronous=sqlite_synchronous)
    if scheme in ("postgresql", "postgres"):
        raise ConfigError(
            f"store URL {url!r}: the PostgreSQL backend is not available in this release"
        )
    raise ConfigError(f"store URL {url!r}: unknown scheme {scheme!r}; use sqlite:///path")

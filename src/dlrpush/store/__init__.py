"""Store backends, chosen by URL: ``sqlite:///path/to.db`` (the default) or ``postgresql://…``."""

from __future__ import annotations

from urllib.parse import urlsplit

from dlrpush.errors import ConfigError
from dlrpush.settings import redact_url
from dlrpush.store.base import Store


def open_store(
    url: str, *, sqlite_synchronous: str = "FULL", pg_pool_max: int = 10, create: bool = True
) -> Store:
    """Build the backend for ``url`` (not yet connected: call ``await store.open()``).

    With ``create=False`` a SQLite file that does not exist is an error rather than a new,
    empty store: for commands that only read or change existing data.

    ``pg_pool_max`` caps the PostgreSQL connection pool of this process (the LISTEN
    connection of a dispatcher comes on top).
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from dlrpush.store.sqlite import SqliteStore

        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"store URL {url!r}: expected sqlite:///path/to/file.db")
        return SqliteStore(path, synchronous=sqlite_synchronous, create=create)
    if scheme in ("postgresql", "postgres"):
        if pg_pool_max < 1:
            raise ConfigError(f"PostgreSQL pool size must be at least 1, not {pg_pool_max}")
        try:
            from dlrpush.store.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL store needs psycopg: pip install 'dlrpush[postgres]'"
            ) from exc
        return PostgresStore(url, pool_max=pg_pool_max)
    raise ConfigError(
        f"store URL {redact_url(url)!r}: unknown scheme {scheme!r};"
        " use sqlite:///path or postgresql://…"
    )

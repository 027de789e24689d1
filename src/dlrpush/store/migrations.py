"""Versioned schema migrations shipped as SQL files, one folder per backend.

Files are named ``NNNN_description.sql``; a backend applies, in order, each version not
yet recorded in its ``schema_migrations`` table, one transaction per file. An empty
database instead gets ``schema.sql``, the snapshot of all migrations applied, in one
transaction; a test holds the two paths to the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration file on lines ending in ``;`` (our files keep to that form),
    except inside a ``$$``-quoted function body."""
    statements: list[str] = []
    current: list[str] = []
    in_body = False
    for line in sql.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current.append(line)
        if line.count("$$") % 2:
            in_body = not in_body
        if stripped.endswith(";") and not in_body:
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    if current and "".join(current).strip():
        statements.append("\n".join(current).strip())
    return tuple(statements)


def load_migrations(backend: str) -> list[Migration]:
    folder = resources.files("dlrpush.store").joinpath("sql", backend)
    out = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql") or not name[0].isdigit():
            continue
        version = int(name.split("_", 1)[0])
        out.append(Migration(version, name[:-4], split_statements(entry.read_text("utf-8"))))
    return sorted(out, key=lambda m: m.version)


def load_fresh_schema(backend: str) -> tuple[str, ...]:
    """Statements of the snapshot that a fresh install applies."""
    path = resources.files("dlrpush.store").joinpath("sql", backend, "schema.sql")
    return split_statements(path.read_text("utf-8"))

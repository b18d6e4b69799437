"""Database errors that mean "another transaction got there first": nothing was written, and
the same work done again will see what the other one did."""

from __future__ import annotations

import sqlalchemy.exc

_UNIQUE_VIOLATION = "23505"


def lost_a_race(exc: BaseException) -> bool:
    """A duplicate key met when another transaction committed the same key first, a
    deadlock or a serialization failure (SQLSTATE class 40): the transaction was rolled back
    whole. Only PostgreSQL has concurrent writers (SQLite's errors carry no SQLSTATE; a
    constraint or trigger that refuses a write there is not a race). The error is
    SQLAlchemy's, or psycopg's own from a statement run on it directly (postgres.fetch)."""
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    code = getattr(orig, "sqlstate", None)
    return isinstance(code, str) and (code == _UNIQUE_VIOLATION or code.startswith("40"))

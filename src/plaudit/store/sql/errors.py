"""Database errors that mean "another transaction got there first": nothing was written, and
the same work done again will see what the other one did."""

from __future__ import annotations

import sqlalchemy.exc


def lost_a_race(exc: BaseException) -> bool:
    """A duplicate key met at commit time of another transaction, a deadlock or a
    serialization failure (SQLSTATE class 40): the transaction was rolled back whole."""
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return True
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(code, str) and code.startswith("40")

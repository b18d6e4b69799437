"""The schema a dialect is declared to have: the metadata without what it declares for
other dialects only (``ddl_if``), to compare a migrated database against."""

from __future__ import annotations

from sqlalchemy import MetaData

from plaudit.store.sql.tables import metadata


def _for_other_dialect(item: object, dialect: str) -> bool:
    condition = getattr(item, "_ddl_if", None)
    return condition is not None and condition.dialect not in (None, dialect)


def declared_for(dialect: str) -> MetaData:
    """A copy of the metadata as ``dialect`` gets it. Leaving those objects out of the copy,
    rather than filtering them from alembic's comparison, keeps the comparison able to find
    them in a database where they must not be (alembic matches foreign keys by their columns
    and never asks a filter about a matched one)."""
    copy = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    for table in metadata.tables.values():
        copied = copy.tables[table.key]
        for index in table.indexes:
            if _for_other_dialect(index, dialect):
                copied.indexes.discard(next(i for i in copied.indexes if i.name == index.name))
        for constraint in table.constraints:
            if _for_other_dialect(constraint, dialect):
                copied.constraints.discard(
                    next(c for c in copied.constraints if c.name == constraint.name)
                )
    return copy

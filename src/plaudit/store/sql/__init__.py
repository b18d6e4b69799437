"""SQLAlchemy Core adapter of the store ports (SQLite today; the dialect-specific bits are few)."""

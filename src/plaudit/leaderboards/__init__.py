"""Leaderboards: the projection port, its in-memory and Redis adapters, and board windows."""

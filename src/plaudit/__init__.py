"""Plaudit: a self-hosted gamification engine."""

__version__ = "0.1.0"

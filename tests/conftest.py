"""Shared fixtures, and the rule for backend suites: skipped and named when their service is
absent on a developer's machine, failed when CI requires them (PLAUDIT_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from plaudit.bootstrap import Container, build, prepare_embedded
from plaudit.domain.auth import Scope
from plaudit.settings import Settings

BACKENDS = {
    "postgres": ("PLAUDIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "redis": ("PLAUDIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "nats": ("PLAUDIT_TEST_NATS_URL", "nats://127.0.0.1:4222"),
}
_skipped_backends: dict[str, str] = {}


def _reachable(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{parts.port}: {exc.strerror or exc}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    required = os.environ.get("PLAUDIT_REQUIRE_SERVICES") == "1"
    for item in items:
        for backend, (env, default) in BACKENDS.items():
            if backend not in item.keywords:
                continue
            problem = _reachable(os.environ.get(env, default))
            if problem is None or required:
                continue  # required and down: the test runs and fails on its connection
            _skipped_backends[backend] = problem
            item.add_marker(pytest.mark.skip(reason=f"{backend} unreachable ({problem})"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_backends:
        terminalreporter.section("backend suites skipped")
        for backend, problem in sorted(_skipped_backends.items()):
            terminalreporter.write_line(
                f"{backend}: SKIPPED, service unreachable ({problem}); "
                "run .ci/run or set PLAUDIT_REQUIRE_SERVICES=1 to require it"
            )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture
def container(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    built = build(settings, clock=clock)
    assert prepare_embedded(built) is not None  # a fresh database gets a first admin key
    yield built
    built.close()


def new_key(container: Container, *scopes: Scope) -> str:
    return container.tenancy.create_key(container.default_tenant, "test", frozenset(scopes)).secret


@pytest.fixture
def admin_key(container: Container) -> str:
    return new_key(container, Scope.ADMIN)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """This test process's own PostgreSQL database, migrated (see tests/support/postgres)."""
    from tests.support.postgres import scratch_database

    with scratch_database() as url:
        yield url


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings of the mode the test is parametrized with: embedded (SQLite in tmp_path), or
    scale-out (this process's PostgreSQL database, emptied; Redis under a key prefix of the
    test's own, deleted afterwards)."""
    if request.param == "embedded":
        return Settings(data_dir=tmp_path / "data", _env_file=None)
    import redis
    from sqlalchemy import create_engine

    from plaudit.settings import LeaderboardSettings
    from tests.support.postgres import empty
    from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix

    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    try:
        empty(engine)
    finally:
        engine.dispose()
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL)

    def clean() -> None:
        delete_prefix(client, prefix)
        client.close()

    request.addfinalizer(clean)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        redis_url=REDIS_URL,
        leaderboards=LeaderboardSettings(redis_prefix=prefix),
        _env_file=None,
    )


MODES = ["embedded", pytest.param("scale-out", marks=[pytest.mark.postgres, pytest.mark.redis])]

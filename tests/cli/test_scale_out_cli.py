"""The scale-out mode's start: one line naming what is wrong, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from plaudit.store import migrate
from tests.cli.test_cli import _one_line_error, plaudit
from tests.support.postgres import POSTGRES_URL, scratch_database
from tests.support.redis_keys import REDIS_URL


def test_worker_and_several_api_processes_need_the_scale_out_mode(tmp_path: Path) -> None:
    _one_line_error(plaudit(tmp_path, "worker"), "scale-out mode", "PLAUDIT_DATABASE_URL")
    _one_line_error(
        plaudit(tmp_path, "serve", "--port", "0", "--workers", "2"), "--workers", "scale-out"
    )


def test_postgresql_without_redis_is_refused_naming_it(tmp_path: Path) -> None:
    result = plaudit(tmp_path, "worker", PLAUDIT_DATABASE_URL=POSTGRES_URL)
    _one_line_error(result, "PLAUDIT_REDIS_URL", "required")


def test_an_unreachable_database_is_named(tmp_path: Path) -> None:
    # Port 1 on this host: nothing listens there.
    url = "postgresql://postgres:secret@127.0.0.1:1/plaudit"
    result = plaudit(tmp_path, "worker", PLAUDIT_DATABASE_URL=url, PLAUDIT_REDIS_URL=REDIS_URL)
    _one_line_error(result, "database", "127.0.0.1:1", "unreachable")
    assert "secret" not in result.stderr


@pytest.mark.postgres
@pytest.mark.redis
def test_a_schema_behind_the_code_and_an_unreachable_stream_are_named(tmp_path: Path) -> None:
    with scratch_database("cli") as url:
        env = {"PLAUDIT_DATABASE_URL": url, "PLAUDIT_REDIS_URL": REDIS_URL}
        engine = create_engine(url)
        try:  # the schema of the previous release: this code is newer
            with engine.begin() as conn:
                config = migrate._config()
                config.attributes["connection"] = conn
                command.downgrade(config, "-1")
        finally:
            engine.dispose()
        _one_line_error(plaudit(tmp_path, "worker", **env), "schema", "plaudit migrate")
        _one_line_error(plaudit(tmp_path, "serve", "--port", "0", **env), "plaudit migrate")
        assert plaudit(tmp_path, "migrate", **env).returncode == 0
        env["PLAUDIT_STREAM_URL"] = "nats://127.0.0.1:1"
        _one_line_error(plaudit(tmp_path, "worker", **env), "stream", "nats://127.0.0.1:1")

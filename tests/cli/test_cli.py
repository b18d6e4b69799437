"""The CLI as a user runs it: a real process, one line per error, non-zero exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def plaudit(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PLAUDIT_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "plaudit", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("plaudit: error:"), lines[0]
    for word in words:
        assert word in lines[0]


def test_keys_are_created_listed_and_revoked(tmp_path: Path) -> None:
    created = plaudit(
        tmp_path, "keys", "create", "--name", "lms", "--scope", "events:write", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("plk_")
    assert key["scopes"] == ["events:write"]
    listed = plaudit(tmp_path, "keys", "list")
    assert key["id"] in listed.stdout
    assert key["key"] not in listed.stdout
    revoked = plaudit(tmp_path, "keys", "revoke", key["id"])
    assert revoked.returncode == 0
    assert "Revoked" in revoked.stdout
    db = tmp_path / "plaudit.db"
    assert key["key"].encode() not in db.read_bytes()  # only the hash is stored


def test_an_unknown_scope_is_one_line(tmp_path: Path) -> None:
    result = plaudit(tmp_path, "keys", "create", "--name", "x", "--scope", "root")
    _one_line_error(result, "unknown scope 'root'")


def test_revoking_an_unknown_key_is_one_line(tmp_path: Path) -> None:
    plaudit(tmp_path, "migrate")
    _one_line_error(plaudit(tmp_path, "keys", "revoke", "key_nope"), "key_nope")


def test_listing_keys_of_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    _one_line_error(plaudit(tmp_path, "keys", "list"), "plaudit migrate")


def test_migrate_brings_the_schema_up_to_date_once(tmp_path: Path) -> None:
    first = plaudit(tmp_path, "migrate")
    assert first.returncode == 0
    assert "migrated" in first.stdout
    second = plaudit(tmp_path, "migrate")
    assert "already current" in second.stdout


def test_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    result = plaudit(tmp_path, "migrate", PLAUDIT_API__PORT="eighty")
    _one_line_error(result, "api.port")
    other = plaudit(tmp_path, "migrate", PLAUDIT_DATABASE_URL="oracle://x")
    _one_line_error(other, "oracle")


def test_serving_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = plaudit(tmp_path, "serve", "--port", str(port))
    _one_line_error(result, f"127.0.0.1:{port}")
    assert not (tmp_path / "plaudit.db").exists()  # nothing written


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    _one_line_error(plaudit(blocker / "data", "migrate"))


@pytest.mark.parametrize("args", [["nonsense"], ["keys", "create"], ["serve", "--port", "x"]])
def test_usage_errors_exit_2_without_traceback(tmp_path: Path, args: list[str]) -> None:
    result = plaudit(tmp_path, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = plaudit(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "demo", "keys"):
        assert command in result.stdout

"""A real ``plaudit serve`` process for tests: own data dir, free 127.0.0.1 port, killed by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 5


def plaudit_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment without any PLAUDIT_* setting of the caller's, plus the data dir and
    ``settings`` (PLAUDIT_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAUDIT_")}
    env["PLAUDIT_DATA_DIR"] = str(data_dir)
    env.update(settings)
    return env


def run_plaudit(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run one ``plaudit`` command on ``data_dir`` (with ``env``, else ``plaudit_env``); its
    stdout, or a failure with its stderr."""
    # cwd is the data dir's parent so that no stray .env of the caller's is read.
    done = subprocess.run(
        [sys.executable, "-m", "plaudit", *args],
        env=env if env is not None else plaudit_env(data_dir),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"plaudit {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def create_admin_key(data_dir: Path) -> str:
    """Migrate ``data_dir`` (tenant included) and return the secret of a new admin key."""
    created = json.loads(
        run_plaudit(data_dir, "keys", "create", "--name", "t", "--scope", "admin", "--json")
    )
    secret = created["key"]
    assert isinstance(secret, str)
    return secret


def stop_process(
    process: subprocess.Popen[bytes] | None, signum: signal.Signals = signal.SIGTERM
) -> None:
    """Signal a process this test run started, by its PID, and wait for it; SIGKILL if it
    does not exit in time. Safe to repeat."""
    # poll() is None: not reaped yet, so the PID is still this process's.
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signum)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


def spawn_with_port_file(
    command: list[str], *, port_file: Path, log_path: Path, what: str, **popen: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server that writes the port it listens on to ``port_file``; the process and
    the port, once it is written (the server is then listening)."""
    port_file.unlink(missing_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **popen
        )
    deadline = time.monotonic() + START_TIMEOUT
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            output = log_path.read_text(errors="replace")
            raise AssertionError(f"{what} did not start:\n{output}")
        time.sleep(0.02)
    return process, int(port_file.read_text())


@dataclass
class LiveServer:
    """A started ``plaudit serve`` and an admin key for it."""

    server: PlauditServer
    key: str

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=timeout,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class PlauditServer:
    """``plaudit serve`` on ``data_dir``; start() may be called again after kill() or stop().

    Each start gets a fresh free port (another test may take the previous one meanwhile) and
    its own log file next to the data dir.
    """

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.args = args  # more options of ``plaudit serve``, e.g. --demo
        self.port = 0
        self.starts = 0
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        assert not self.running, "already running"
        for _ in range(_PORT_ATTEMPTS):
            if self._start_on(free_port()):
                return
        raise AssertionError(f"no free port after {_PORT_ATTEMPTS} attempts:\n{self.output()}")

    def _start_on(self, port: int) -> bool:
        """True once /healthz answers; False if the port was taken meanwhile."""
        self.port = port
        self.starts += 1
        self.log_path = self.data_dir.parent / f"server-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "plaudit", "serve", "--host", HOST),
                    *("--port", str(port), *self.args),
                ],
                env=plaudit_env(self.data_dir),
                cwd=self.data_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._process = None
                    if "cannot listen" in self.output():
                        return False
                    raise AssertionError(f"plaudit serve exited on start:\n{self.output()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"plaudit serve not healthy in {START_TIMEOUT}s:\n{self.output()}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as in a power cut of the process."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time. Safe to repeat."""
        self._signal(signal.SIGTERM)

    def _signal(self, signum: signal.Signals) -> None:
        stop_process(self._process, signum)
        self._process = None

    def output(self) -> str:
        """What the latest start printed (stdout and stderr)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> PlauditServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

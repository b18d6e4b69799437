"""A NATS server with JetStream of the test's own (free port, own store directory), so that a
test may stop and restart it without touching anyone else's."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.server import HOST, free_port, stop_process

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
START_TIMEOUT = 15.0


class NatsServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def start(self) -> None:
        store = self.directory / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        with (self.directory / "nats.log").open("ab") as log:
            self.process = subprocess.Popen(
                [NATS_SERVER, "-a", HOST, "-p", str(self.port), "-js", "-sd", str(store)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nats-server exited {self.process.returncode}")
            try:
                with socket.create_connection((HOST, self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nats-server did not listen on {self.url}")

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""A scale-out deployment on this machine for tests and benchmarks: a PostgreSQL database
and Redis key prefix of its own, a NATS server of its own (or a given one), API processes
(``plaudit serve --workers N``) and ``plaudit worker`` processes, each started and stopped
by PID."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from uuid import uuid4

import httpx
import redis

from tests.support.nats_server import NatsServer
from tests.support.postgres import scratch_database
from tests.support.redis_keys import REDIS_URL, delete_prefix
from tests.support.server import HOST, free_port, plaudit_env, run_plaudit, stop_process

READY_TIMEOUT = 40.0


class Cluster:
    def __init__(self, root: Path, database_url: str, nats: NatsServer, **settings: str) -> None:
        self.root = root
        self.nats = nats
        run = uuid4().hex[:10]
        self.redis_prefix = f"plaudit-test:{run}:"
        self.env = plaudit_env(
            root / "data",
            PLAUDIT_DATABASE_URL=database_url,
            PLAUDIT_REDIS_URL=REDIS_URL,
            PLAUDIT_STREAM_URL=nats.url,
            PLAUDIT_STREAM__PREFIX=f"t{run}",
            PLAUDIT_LEADERBOARDS__REDIS_PREFIX=self.redis_prefix,
            # Load, not abuse: the limits are tested elsewhere.
            PLAUDIT_RATE_LIMITS__PER_KEY="",
            PLAUDIT_RATE_LIMITS__PER_SOURCE="",
            PLAUDIT_RATE_LIMITS__PER_PLAYER="",
            PLAUDIT_LOG_LEVEL="warning",
            **settings,
        )
        self.port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = []
        self.key = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def plaudit(self, *args: str) -> str:
        return run_plaudit(self.root / "data", *args, env=self.env)

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.root / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "plaudit", *args],
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, api_processes: int = 2, workers: int = 2) -> None:
        self.key = json.loads(
            self.plaudit("keys", "create", "--name", "t", "--scope", "admin", "--json")
        )["key"]
        self.api = self._spawn(
            "api",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(api_processes),
        )
        for number in range(workers):
            self.workers.append(self._spawn(f"worker{number}", "worker"))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise AssertionError(f"the API exited {self.api.returncode}: {self.log('api')}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the API was not ready in time: {self.log('api')}")

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout
        )

    def kill_worker(self, number: int) -> None:
        """SIGKILL a worker (no chance to finish anything), then start a new one in its place."""
        stop_process(self.workers[number], signal.SIGKILL)
        self.workers[number] = self._spawn(f"worker{number}", "worker")

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.workers:
            stop_process(process)
        stop_process(self.api)


@contextmanager
def cluster(
    root: Path, api_processes: int = 2, workers: int = 2, **settings: str
) -> Iterator[Cluster]:
    """A running deployment; everything it made (database, keys, stream) goes afterwards."""
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database("cluster"))
        nats = stack.enter_context(NatsServer(root / "nats"))
        made = Cluster(root, url, nats, **settings)
        client = redis.Redis.from_url(REDIS_URL)
        stack.callback(client.close)
        stack.callback(delete_prefix, client, made.redis_prefix)
        stack.callback(made.stop)
        made.start(api_processes, workers)
        yield made

"""What bench/step_cost.py and bench/event_cost.py share: a container on a scratch PostgreSQL
database and a Redis key prefix of its own, the e2e bench's rule set published; the e2e
bench's events; and the CPU of the database's server backends. Run the scripts from the
repository root (they import ``tests.support``), with PLAUDIT_TEST_POSTGRES_URL and
PLAUDIT_TEST_REDIS_URL set as for the tests."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/…`: tests is a package here
    sys.path.insert(0, str(ROOT))

from tests.support.postgres import scratch_database  # noqa: E402
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix  # noqa: E402

from bench.e2e import ACTORS, RULESET  # noqa: E402
from bench.ingest import cpu_seconds  # noqa: E402
from plaudit.bootstrap import Container, build, prepare_embedded  # noqa: E402
from plaudit.domain.events import IncomingEvent  # noqa: E402
from plaudit.settings import LeaderboardSettings, Settings  # noqa: E402


class Backends:
    """The CPU the database's server backends used, read from ``/proc`` by way of a
    connection of its own (not counted)."""

    def __init__(self, url: str) -> None:
        self.database = url.rsplit("/", 1)[1].split("?", 1)[0]
        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def cpu(self) -> float:
        """Seconds of CPU used so far by the database's other backends (still connected)."""
        pids = [
            pid
            for (pid,) in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.database,),
            )
        ]
        return sum(cpu_seconds(pid) or 0.0 for pid in pids)

    def close(self) -> None:
        self.conn.close()


@contextmanager
def bench_container() -> Iterator[tuple[Container, Backends]]:
    """A container as ``plaudit worker`` builds it, on a new database (dropped after) and a
    Redis prefix of its own (deleted after), the e2e bench's rules published."""
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with scratch_database("bench") as url, tempfile.TemporaryDirectory() as data:
            c = build(
                Settings(
                    data_dir=Path(data),
                    database_url=url,
                    redis_url=REDIS_URL,
                    leaderboards=LeaderboardSettings(redis_prefix=prefix),
                    _env_file=None,
                )
            )
            prepare_embedded(c)
            view = c.rulesets.create(c.default_tenant, "bench", RULESET)
            c.rulesets.publish(c.default_tenant, view.record.id, "bench")
            backends = Backends(url)
            try:
                yield c, backends
            finally:
                backends.close()
                c.close()
    finally:
        delete_prefix(client, prefix)
        client.close()


def task_events(first: int, count: int, when: datetime) -> list[IncomingEvent]:
    """Events ``first`` to ``first + count - 1`` as the e2e bench sends them (``task.done``,
    1 to 9 points, its actors in turn by a stride)."""
    return [
        IncomingEvent(
            f"e{n}", "lms", "task.done", f"u{n * 7919 % ACTORS}", when, {"points": 1 + n % 9}
        )
        for n in range(first, first + count)
    ]

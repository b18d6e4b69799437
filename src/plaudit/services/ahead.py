"""Scoring ahead: a helper process evaluates the log's next batch while this process writes
the current one (the embedded mode, when the log is behind by a few batches).

Evaluating and writing a batch each take about half of scoring's time, and both are Python
work that one interpreter cannot run at once (a thread would wait for the interpreter lock
at each row SQLite writes). The helper reads the log and the player states through its own
read connection and sends back the rows to write and the encoded states; nothing is written
outside this process's write transaction, so the helper may die or be wrong at any moment
and lose nothing.

The players are shared: the helper evaluates most of them, the writing process the few of
its own share (a fixed set of partitions) in its write transaction, so that neither waits
for the other.

What the helper read may have changed before its batch is written: another batch, a
retraction, an adjustment, a merge, a published rule set, a player's new attributes. The
write checks, in its transaction, that nothing it relied on did (see
``ScoringService.write_ahead``); when something did, the batch is dropped and scored here.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plaudit.services.scoring import Produced
    from plaudit.store.ports import Database

log = logging.getLogger("plaudit.scoring")

# After the helper declined a batch (a rule set holds events for review, which reads and
# records a day's activity as it scores), how long to score without it.
DECLINED_PAUSE = 30.0
# After the helper failed (it died, reported an error, or did not answer), how long to
# score without it before a new one is started.
FAILED_PAUSE = 60.0
# How long a batch may take the helper before it counts as failed (a batch takes it a
# fraction of a second).
ANSWER_TIMEOUT = 60.0
# How long to wait for the helper to stop (it finishes the batch at hand) before it is
# killed.
STOP_TIMEOUT = 5.0


@dataclass
class TenantAhead:
    """One tenant's part of a batch evaluated ahead, with what the evaluation read."""

    tenant_id: str
    epochs: list[tuple[int, str, int]]  # the rule set versions live and from where
    event_ids: list[str]
    retracted: set[str] = field(default_factory=set)
    # The write token each player's state was built on (None: no stored state).
    bases: dict[str, int | None] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)  # the new states, as JSON
    token: int = 0  # the write token the new states are to carry
    produced: Produced | None = None  # None: the tenant has no rule set yet


@dataclass
class BatchAhead:
    """A batch of the log evaluated ahead: the ``events`` after ``start`` up to ``end``,
    those of the helper's share of the players evaluated."""

    start: int
    end: int
    events: int
    players_generation: int
    tenants: list[TenantAhead] = field(default_factory=list)


class HelperFailed(Exception):
    """The helper process reported an error or answered out of turn."""


class Ahead:
    """This process's side of the helper: starts it, starts its runs, takes its batches.

    The helper evaluates batch after batch from where a run starts (a few batches ahead of
    what was taken at most); each batch taken is written here while it evaluates the next.
    When a batch is not written (something it read changed) or the log's cursor moved
    otherwise, a new run starts from the cursor and what the old one sent is dropped."""

    def __init__(
        self,
        opener: tuple[Callable[[str], Database], str],
        batch_size: int,
        helper: Callable[[Connection, Connection, Callable[[str], Database], str, int], None],
    ) -> None:
        """``helper``: the helper process's function (the pipe it reads, the pipe it
        writes, the database opener and URL, the batch size)."""
        self.opener = opener
        self.batch_size = batch_size
        self.helper = helper
        self._process: Any = None
        self._requests: Connection | None = None
        self._results: Connection | None = None
        self._ready = False
        self._run = 0  # the number of the current run
        self._next: int | None = None  # where the current run's next batch starts
        self._paused_until = 0.0
        self.answer_timeout = ANSWER_TIMEOUT
        self.failures = 0  # times the helper failed (each time stopped, started again later)

    @property
    def pid(self) -> int | None:
        """The helper's process id, while it runs."""
        return None if self._process is None else int(self._process.pid)

    def ready(self, timeout: float) -> bool:
        """Start the helper if it is not running; whether it is up within ``timeout`` s."""
        if self._results is None:
            self._start()
        assert self._results is not None
        return self._ready or (self._results.poll(timeout) and self._started())

    def waiting(self, timeout: float) -> bool:
        """Whether a batch evaluated ahead waits to be taken (within ``timeout`` s)."""
        return self._results is not None and self._results.poll(timeout)

    def take(self, position: int, now: datetime) -> BatchAhead | None:
        """The batch after ``position``, evaluated; None while the helper starts, when it
        declined or is caught up, or when it failed (logged; scoring goes on without it for
        ``FAILED_PAUSE`` seconds, then a new helper is started)."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            return self._take(position, now) if self._started() else None
        except (OSError, EOFError, HelperFailed) as exc:
            log.warning(
                "scoring ahead stopped (%s); scoring goes on without it for %.0f s",
                exc or type(exc).__name__,
                FAILED_PAUSE,
            )
            self.failures += 1
            self.close()
            self._paused_until = time.monotonic() + FAILED_PAUSE
            return None

    def _started(self) -> bool:
        """Whether the helper is up; started when it is not (meanwhile, batches are scored
        in this process)."""
        if self._results is None:
            self._start()
            return False
        if not self._ready:
            if not self._results.poll():
                return False
            self._receive()
            self._ready = True
        return True

    def _take(self, position: int, now: datetime) -> BatchAhead | None:
        assert self._requests is not None
        if self._next != position:
            self._run += 1
            self._requests.send(("start", self._run, position, now))
            self._next = position
        batch: BatchAhead | None = self._receive()
        if batch is None:
            self._paused_until = time.monotonic() + DECLINED_PAUSE
            self._next = None
            return None
        if batch.start != position:
            raise HelperFailed(f"a batch from position {batch.start}, not {position}")
        self._next = batch.end if batch.events else None
        return batch if batch.events else None

    def dropped(self) -> None:
        """The batch taken last was not written: the next one starts a new run."""
        self._next = None

    def close(self) -> None:
        process, requests, results = self._process, self._requests, self._results
        self._process = self._requests = self._results = None
        self._ready, self._next = False, None
        if results is not None:
            results.close()  # a reply being sent fails: the helper stops sending
        if requests is not None:
            with contextlib.suppress(OSError):
                requests.send(("stop",))
            requests.close()
        if process is not None:
            process.join(STOP_TIMEOUT)
            if process.is_alive():  # it only reads: nothing is lost
                process.kill()
                process.join()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process inherited
        requests_read, self._requests = context.Pipe(duplex=False)
        self._results, results_write = context.Pipe(duplex=False)
        open_database, url = self.opener
        self._process = context.Process(
            target=self.helper,
            args=(requests_read, results_write, open_database, url, self.batch_size),
            name="plaudit-scoring-ahead",
            daemon=True,
        )
        self._process.start()
        requests_read.close()
        results_write.close()
        log.info("scoring ahead: helper process %d started", self._process.pid)

    def _receive(self) -> Any:
        """The next reply of the current run (those of earlier runs are dropped)."""
        assert self._results is not None
        while True:
            if not self._results.poll(self.answer_timeout):
                raise HelperFailed(f"no answer in {self.answer_timeout:.0f} s")
            kind, run, value = self._results.recv()
            if kind == "failed":
                raise HelperFailed(value)
            if run == self._run:
                return value

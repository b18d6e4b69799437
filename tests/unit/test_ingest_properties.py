"""Properties of ingestion over the embedded store, whatever the batches look like."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plaudit.bootstrap import Container, build, prepare_embedded
from plaudit.domain.events import IncomingEvent, Outcome
from plaudit.settings import Settings
from plaudit.store.ports import EventQuery
from tests.conftest import FakeClock

WHEN = datetime(2026, 5, 1, tzinfo=UTC)

events = st.builds(
    lambda key, source, actor: IncomingEvent(str(key), source, "lesson.completed", actor, WHEN),
    st.integers(0, 30),
    st.sampled_from(["lms", "crm"]),
    st.sampled_from(["ann", "bob", "cy"]),
)
batches = st.lists(st.lists(events, min_size=1, max_size=15), min_size=1, max_size=6)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ingest-properties")


_counter = iter(range(1_000_000))


def _fresh_container(root: Path) -> Container:
    container = build(Settings(data_dir=root / str(next(_counter)), _env_file=None), FakeClock())
    prepare_embedded(container)
    return container


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_each_source_event_is_accepted_once_and_stored_once(
    data_root: Path, batches: list[list[IncomingEvent]]
) -> None:
    container = _fresh_container(data_root)
    try:
        accepted: list[tuple[str, str]] = []
        for batch in batches:
            report = container.ingest.ingest("default", batch)
            assert len(report.results) == len(batch)
            for event, result in zip(batch, report.results, strict=True):
                assert (result.key, result.source) == (event.key, event.source)
                if result.outcome is Outcome.ACCEPTED:
                    accepted.append((event.source, event.key))
                else:
                    assert result.outcome is Outcome.DUPLICATE
                    assert result.event_id is not None
        distinct = {(e.source, e.key) for batch in batches for e in batch}
        assert sorted(accepted) == sorted(distinct)
        with container.db.read() as uow:
            stored = uow.events.query("default", EventQuery(limit=10_000))
        assert sorted((e.source, e.key) for e in stored) == sorted(distinct)
        # The first occurrence is the one stored; each (source, actor) is one player.
        first_actor: dict[tuple[str, str], str] = {}
        for batch in batches:
            for e in batch:
                first_actor.setdefault((e.source, e.key), e.actor)
        assert {(e.source, e.key): e.actor for e in stored} == first_actor
        players = {(e.source, e.actor): e.player_id for e in stored}
        assert len(set(players.values())) == len(set(players))
    finally:
        container.close()


def test_concurrent_requests_sharing_commits_accept_each_event_once(
    data_root: Path,
) -> None:
    import threading

    container = _fresh_container(data_root)
    reports: list[list[tuple[str, Outcome]]] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        for round_ in range(10):
            # Half of each batch overlaps with another worker's batch of the same round.
            keys = [f"r{round_}-{(worker + i) % 8}-{i}" for i in range(40)]
            batch = [IncomingEvent(k, "lms", "t", f"u{i % 5}", WHEN) for i, k in enumerate(keys)]
            report = container.ingest.ingest("default", batch)
            with lock:
                reports.append([(r.key or "", r.outcome) for r in report.results])

    try:
        threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = [k for report in reports for k, o in report if o is Outcome.ACCEPTED]
        sent = {k for report in reports for k, _ in report}
        assert sorted(accepted) == sorted(sent)
        with container.db.read() as uow:
            assert len(uow.events.query("default", EventQuery(limit=100_000))) == len(sent)
    finally:
        container.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_each_commit_announces_its_new_events_once_per_partition(
    data_root: Path, batches: list[list[IncomingEvent]]
) -> None:
    from plaudit.domain.partitions import partition_of
    from plaudit.stream.ports import Appended

    container = _fresh_container(data_root)
    told: list[list[Appended]] = []
    container.ingest.on_appended = told.append
    tenant = container.default_tenant
    try:
        for batch in batches:
            report = container.ingest.ingest(tenant, batch)
            # One commit per request here: its new events, counted per partition from the
            # first (the message's key), in the order they were sent.
            expected: dict[int, Appended] = {}
            for r in report.results:
                if r.outcome is Outcome.ACCEPTED:
                    assert r.event_id is not None
                    assert r.player_id is not None
                    p = partition_of(tenant, r.player_id)
                    first = expected.get(p)
                    expected[p] = Appended(
                        tenant,
                        p,
                        first.key if first else r.event_id,
                        first.count + 1 if first else 1,
                    )
            assert told.pop() == list(expected.values())
        assert told == []
    finally:
        container.close()

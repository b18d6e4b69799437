"""The composition root: the one place where settings become adapters and services."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from plaudit.domain.clock import Clock, utc_now
from plaudit.leaderboards.memory import MemoryProjection
from plaudit.leaderboards.ports import AsyncReads, Projection
from plaudit.leaderboards.redis import RedisProjection
from plaudit.services.backfill import BackfillService
from plaudit.services.badges import BadgeService
from plaudit.services.events import EventLogService
from plaudit.services.idempotency import IdempotencyService
from plaudit.services.ingest import IngestService
from plaudit.services.leaderboards import LeaderboardService
from plaudit.services.players import PlayerService
from plaudit.services.progress import ProgressService
from plaudit.services.rulesets import RuleBook, RuleSetService
from plaudit.services.scoring import ScoringService
from plaudit.services.simulation import SimulationService
from plaudit.services.tenancy import CreatedKey, TenancyService
from plaudit.settings import Settings
from plaudit.store import migrate
from plaudit.store.sql.database import SqlDatabase, create_database


@dataclass
class Container:
    settings: Settings
    db: SqlDatabase
    clock: Clock
    tenancy: TenancyService
    ingest: IngestService
    players: PlayerService
    event_log: EventLogService
    idempotency: IdempotencyService
    rulesets: RuleSetService
    scoring: ScoringService
    progress: ProgressService
    simulation: SimulationService
    badges: BadgeService
    backfill: BackfillService
    leaderboards: LeaderboardService
    default_tenant: str = field(default="default")
    redis: Redis | None = None
    redis_async: AsyncRedis | None = None  # the hot leaderboard reads of API processes

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            self.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}: {exc}"
        if self.redis is not None:
            try:
                self.redis.ping()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"error: {type(exc).__name__}: {exc}"
        return checks

    def close(self) -> None:
        self.db.close()
        if self.redis is not None:
            self.redis.close()


def build(settings: Settings, clock: Clock = utc_now) -> Container:
    """Wire adapters and services. Opens no connection until one is used."""
    db = create_database(settings.resolved_database_url)
    book = RuleBook()
    rulesets = RuleSetService(db, clock, book)
    scoring = ScoringService(db, clock, book)
    redis = None
    projection: Projection = MemoryProjection()
    async_reads: AsyncReads | None = None
    redis_async = None
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        redis_async = AsyncRedis.from_url(settings.redis_url)
        projection = async_reads = RedisProjection(
            redis, settings.leaderboards.redis_prefix, redis_async
        )
    return Container(
        settings=settings,
        db=db,
        clock=clock,
        tenancy=TenancyService(db, clock),
        ingest=IngestService(db, clock, settings.ingest.max_future_skew),
        players=PlayerService(db, clock, on_merge=scoring.absorb),
        event_log=EventLogService(db),
        idempotency=IdempotencyService(
            db, clock, settings.idempotency.ttl, settings.idempotency.in_flight_timeout
        ),
        rulesets=rulesets,
        scoring=scoring,
        progress=ProgressService(db, clock, book),
        simulation=SimulationService(db, book, rulesets),
        badges=BadgeService(db, clock, book),
        backfill=BackfillService(db, clock, book, scoring),
        leaderboards=LeaderboardService(
            db,
            clock,
            book,
            projection,
            in_process=isinstance(projection, MemoryProjection),
            async_reads=async_reads,
        ),
        default_tenant=settings.default_tenant,
        redis=redis,
        redis_async=redis_async,
    )


def prepare_embedded(container: Container) -> CreatedKey | None:
    """Embedded start: migrate, make the default tenant, and a first admin key if none.

    Returns the new key (to print once) or None when the tenant already has keys.
    """
    migrate.upgrade(container.db.engine)
    container.tenancy.ensure_tenant(container.default_tenant, "Default tenant")
    container.leaderboards.start()
    return container.tenancy.ensure_first_admin_key(container.default_tenant)

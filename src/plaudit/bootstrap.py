"""The composition root: the one place where settings become adapters and services."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from redis import Redis
from sqlalchemy import make_url

from plaudit.domain.clock import Clock, utc_now
from plaudit.errors import ConfigurationError
from plaudit.identity.oidc import ClaimMapping, OidcConfig, OidcVerifier
from plaudit.leaderboards.memory import MemoryProjection
from plaudit.leaderboards.ports import AsyncReads, Projection
from plaudit.leaderboards.redis import RedisProjection
from plaudit.ratelimit.memory import MemoryRateLimiter
from plaudit.ratelimit.ports import RateLimiter
from plaudit.ratelimit.redis import RedisRateLimiter
from plaudit.redis_multiplex import AsyncScripts, multiplexed_client
from plaudit.services.audit import AuditService
from plaudit.services.backfill import BackfillService
from plaudit.services.badges import BadgeService
from plaudit.services.closings import WindowClosings
from plaudit.services.dispatch import DispatchService
from plaudit.services.events import EventLogService
from plaudit.services.holds import HoldService
from plaudit.services.idempotency import IdempotencyService
from plaudit.services.ingest import IngestService
from plaudit.services.leaderboards import LeaderboardService
from plaudit.services.notifications import NotificationService
from plaudit.services.players import PlayerService
from plaudit.services.progress import ProgressService
from plaudit.services.rulesets import RuleBook, RuleSetService
from plaudit.services.scoring import ScoringService
from plaudit.services.simulation import SimulationService
from plaudit.services.tenancy import CreatedKey, TenancyService
from plaudit.services.webhooks import WebhookService
from plaudit.settings import Settings
from plaudit.store import migrate
from plaudit.store.sql.database import SqlDatabase, create_database, engine_url
from plaudit.webhooks.schedule import parse_schedule
from plaudit.webhooks.sender import WebhookSender
from plaudit.workers.dispatcher import Dispatcher

if TYPE_CHECKING:  # the NATS client takes ~150 ms to import: only scale-out loads it
    from plaudit.stream.nats import EventStream

# A claimed delivery is sent again if its outcome is not recorded this long after the
# send's own timeout: long enough for a busy store, short enough to redeliver promptly.
LEASE_MARGIN = timedelta(seconds=10)


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
    audit: AuditService
    holds: HoldService
    webhooks: WebhookService
    closings: WindowClosings
    notifications: NotificationService
    dispatch: DispatchService
    default_tenant: str = field(default="default")
    redis: Redis | None = None
    redis_async: AsyncScripts | None = None  # the API's hot paths: rate limits, board reads
    rate_limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    oidc: OidcVerifier | None = None  # bearer tokens of the identity provider, when set
    stream: EventStream | None = None  # the scale-out mode's NATS JetStream, when set

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
        if self.stream is not None:
            checks["stream"] = "ok" if self.stream.connected else "error: not connected to NATS"
        return checks

    def close(self) -> None:
        self.scoring.close()
        self.db.close()
        if self.redis is not None:
            self.redis.close()


def build(settings: Settings, clock: Clock = utc_now) -> Container:
    """Wire adapters and services. Opens no connection until one is used."""
    db = create_database(settings.resolved_database_url, pool_size=settings.database_pool)
    book = RuleBook()
    rulesets = RuleSetService(db, clock, book)
    scoring = ScoringService(
        db,
        clock,
        book,
        batch_size=settings.worker.batch,
        partitioned=settings.scale_out,
        ahead=settings.worker.ahead and (os.cpu_count() or 1) >= 2,
    )
    redis = None
    projection: Projection = MemoryProjection()
    async_reads: AsyncReads | None = None
    redis_async = None
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        redis_async = multiplexed_client(settings.redis_url)
        projection = async_reads = RedisProjection(
            redis, settings.leaderboards.redis_prefix, redis_async
        )
    leaderboards = LeaderboardService(
        db,
        clock,
        book,
        projection,
        in_process=isinstance(projection, MemoryProjection),
        async_reads=async_reads,
    )
    stream = None
    if settings.stream_url:
        from plaudit.stream.nats import EventStream  # noqa: PLC0415 - see TYPE_CHECKING

        stream = EventStream(
            settings.stream_url, settings.stream.prefix, settings.stream.ack_wait.total_seconds()
        )
    limiter: RateLimiter = MemoryRateLimiter()
    if redis is not None:
        # Shared by every API process: a key's budget is the same whichever answers.
        limiter = RedisRateLimiter(redis, settings.leaderboards.redis_prefix, aio=redis_async)
    ingest = IngestService(db, clock, settings.ingest.max_future_skew)
    if stream is not None:
        ingest.on_appended = stream.announce
    return Container(
        stream=stream,
        oidc=_oidc(settings),
        rate_limiter=limiter,
        settings=settings,
        db=db,
        clock=clock,
        tenancy=TenancyService(db, clock),
        ingest=ingest,
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
        leaderboards=leaderboards,
        audit=AuditService(db),
        holds=HoldService(db, clock, scoring),
        closings=WindowClosings(db, clock, leaderboards),
        webhooks=WebhookService(
            db,
            clock,
            allow_loopback=settings.webhooks.allow_loopback,
            max_in_flight=settings.webhooks.max_in_flight,
        ),
        notifications=NotificationService(db),
        dispatch=DispatchService(
            db,
            clock,
            schedule=parse_schedule(settings.webhooks.schedule),
            lease=settings.webhooks.timeout + LEASE_MARGIN,
            disable_after=settings.webhooks.disable_after,
        ),
        default_tenant=settings.default_tenant,
        redis=redis,
        redis_async=redis_async,
    )


def _oidc(settings: Settings) -> OidcVerifier | None:
    oidc = settings.oidc
    if oidc.issuer is None:
        return None
    config = OidcConfig(
        issuer=oidc.issuer,
        audience=oidc.audience,
        leeway=oidc.leeway,
        allow_http_loopback=oidc.allow_http_loopback,
        claims=ClaimMapping(
            tenant_claim=None if oidc.fixed_tenant else oidc.tenant_claim,
            fixed_tenant=oidc.fixed_tenant,
            roles_claim=oidc.roles_claim,
            player_claim=oidc.player_claim,
        ),
    )
    return OidcVerifier(config)


def dispatcher(container: Container) -> Dispatcher:
    """The webhook dispatcher of this process, with its own HTTP client."""
    hooks = container.settings.webhooks
    sender = WebhookSender(
        timeout=hooks.timeout.total_seconds(), allow_loopback=hooks.allow_loopback
    )
    return Dispatcher(
        container.dispatch,
        sender,
        container.clock,
        concurrency=hooks.concurrency,
        poll=hooks.poll.total_seconds(),
    )


def prepare_embedded(container: Container) -> CreatedKey | None:
    """Embedded start: migrate, make the default tenant, and a first admin key if none.

    Returns the new key (to print once) or None when the tenant already has keys.
    """
    migrate.upgrade(container.db.engine)
    container.tenancy.ensure_tenant(container.default_tenant, "Default tenant")
    container.leaderboards.start()
    return container.tenancy.ensure_first_admin_key(container.default_tenant)


def check_dependencies(container: Container) -> None:
    """At the start of a scale-out process: a one-line ConfigurationError naming the first
    dependency that cannot be reached, or a schema behind (or ahead of) this code."""
    settings = container.settings
    try:
        container.db.ping()
    except Exception as exc:
        raise ConfigurationError(
            f"database {_shown(settings.resolved_database_url)} unreachable: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    migrate.ensure_current(container.db.engine)
    if container.redis is not None:
        try:
            container.redis.ping()
        except Exception as exc:
            raise ConfigurationError(
                f"redis {_shown(settings.redis_url or '')} unreachable: {type(exc).__name__}: {exc}"
            ) from None
    if container.stream is not None:
        stream = container.stream

        async def probe() -> None:
            await stream.connect()
            await stream.close()

        asyncio.run(probe())


def _shown(url: str) -> str:
    """A URL fit for a message: without its password."""
    try:
        return make_url(engine_url(url)).render_as_string(hide_password=True)
    except Exception:
        return url.rsplit("@", maxsplit=1)[-1]


def conninfo(settings: Settings) -> str:
    """The libpq URI of the PostgreSQL database (the workers' lease connection)."""
    url = make_url(engine_url(settings.resolved_database_url))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def prepare_scale_out(container: Container) -> CreatedKey | None:
    """A scale-out start: dependencies reachable, the schema current (``plaudit migrate``
    makes it so; processes never migrate on their own), the default tenant and a first
    admin key if it has none."""
    check_dependencies(container)
    container.tenancy.ensure_tenant(container.default_tenant, "Default tenant")
    return container.tenancy.ensure_first_admin_key(container.default_tenant)

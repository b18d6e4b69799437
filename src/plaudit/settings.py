"""Settings, read from PLAUDIT_* environment variables (and an optional .env) by bootstrap only.

Nested parts use a double underscore: ``PLAUDIT_API__MAX_BODY_BYTES=1048576``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plaudit.ratelimit.ports import parse_limit
from plaudit.webhooks.schedule import parse_schedule


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # 1,000 events of about 1 KiB each fit with room to spare; anything larger is a mistake.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # The batch limit the API documents; larger batches get 413.
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    page_size_max: int = Field(default=1000, ge=1)


class IngestSettings(BaseModel):
    # Sources' clocks drift; an occurred_at further ahead than this is a bug on their side.
    max_future_skew: timedelta = timedelta(minutes=15)


class IdempotencySettings(BaseModel):
    # The IETF draft asks that keys be honoured for at least 24 hours.
    ttl: timedelta = timedelta(hours=24)
    # A request holding a key longer than this is presumed dead (its process crashed), so
    # a retry may take the key over instead of getting 409 forever.
    in_flight_timeout: timedelta = timedelta(minutes=2)


class LeaderboardSettings(BaseModel):
    # The seed asks for a daily comparison of the projection with SQL; drift is repaired.
    reconcile_every: timedelta = timedelta(days=1)
    # Live streams push at most this often per connection: a busy board is coalesced.
    stream_interval: timedelta = timedelta(seconds=1)
    # Redis keys start with this, so several deployments (or test runs) can share a server.
    redis_prefix: str = "plaudit:"


class TlsSettings(BaseModel):
    """TLS served by Plaudit itself (else plain HTTP, for a TLS-terminating proxy)."""

    cert_file: Path | None = None
    key_file: Path | None = None
    # Client certificates signed by this CA are accepted as credentials (mutual TLS);
    # clients without one still use API keys or tokens.
    client_ca_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("client_ca_file needs cert_file and key_file (TLS served here)")
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no file {str(path)!r}")
        return self


class OidcSettings(BaseModel):
    """Bearer tokens (JWTs) from one OpenID Connect provider, beside API keys: people, and
    services through client credentials. Off unless ``issuer`` is set."""

    issuer: str | None = None
    audience: str = "plaudit"
    # Where the provider puts the tenant, the roles (owner, admin, editor, viewer, ingest,
    # player) and, for players, who they are (``source:external_id`` or ``plr_…``).
    tenant_claim: str = "plaudit_tenant"
    # For a provider that serves one tenant: every token belongs to it.
    fixed_tenant: str | None = None
    roles_claim: str = "plaudit_roles"
    player_claim: str = "plaudit_player"
    # Clock skew allowed on exp/nbf/iat (at most 60 s).
    leeway: timedelta = timedelta(seconds=30)
    # Tests only: an http:// provider on 127.0.0.1.
    allow_http_loopback: bool = False


class RateLimitSettings(BaseModel):
    """Token buckets as "amount/unit" (s, min, h, day); an empty value turns a limit off.
    The defaults stop floods, not heavy legitimate use: set them to what each integration
    needs."""

    # Requests per API key (or bearer token), whatever the route.
    per_key: str = "36000/min"
    # Requests per client address (the proxy's, unless uvicorn trusts forwarded headers).
    per_source: str = "72000/min"
    # Events per player (source and actor) at ingestion: a flood from one user id; the
    # events over it are rejected, each with the time to retry. Generous: imports of a
    # player's history come in bursts.
    per_player: str = "6000/min"

    @model_validator(mode="after")
    def _valid_limits(self) -> RateLimitSettings:
        for name in ("per_key", "per_source", "per_player"):
            value = getattr(self, name)
            if value:
                try:
                    parse_limit(value, name=name)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self


class WebhookSettings(BaseModel):
    # Standard Webhooks and Svix give a receiver 15 s; a slower one is counted as failed.
    timeout: timedelta = timedelta(seconds=15)
    # Delay before attempt 1, 2, …; after the last, the message is dead-lettered. Svix's
    # schedule then two daily attempts: about three days, a receiver down over a weekend.
    schedule: str = "0s,5s,5m,30m,2h,5h,10h,10h,24h,24h"
    # Development only: allows http:// and loopback receivers. Never in production: it
    # opens the host's own services to whoever may create a subscription.
    allow_loopback: bool = False
    # An endpoint failing without a single success for this long is disabled (Svix: 5 days).
    disable_after: timedelta = timedelta(days=5)
    # Attempts under way at once per endpoint unless the subscription says otherwise: a
    # dispatcher round every ~15 ms refills the free slots, so 32 lets a fast receiver take
    # 2,000 a second; a fragile one can ask for fewer.
    max_in_flight: int = Field(default=32, ge=1, le=100)
    # Attempts under way at once per dispatcher process.
    concurrency: int = Field(default=64, ge=1, le=1000)
    # Delivered messages and their attempt logs are kept this long (dead letters stay).
    retention: timedelta = timedelta(days=30)
    # How often an idle dispatcher looks for new messages; in-process scoring also wakes it
    # after each batch, so this bounds the delay only for messages of other processes.
    poll: timedelta = timedelta(milliseconds=100)

    @model_validator(mode="after")
    def _valid_schedule(self) -> WebhookSettings:
        parse_schedule(self.schedule)
        return self


class StreamSettings(BaseModel):
    """NATS JetStream between ingestion and the scoring workers (the scale-out mode)."""

    # Stream and subject names start with this, so that several deployments (or test runs)
    # can share a NATS server: subjects are ``<prefix>.events.<tenant>.<partition>``.
    prefix: str = Field(default="plaudit", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    # A message not acknowledged this long after delivery (its worker died) is delivered again.
    ack_wait: timedelta = timedelta(seconds=30)
    # How often a worker's sweeper looks for logged events that no worker has scored (a
    # lost stream message, an API process killed between its commit and its publish).
    sweep_every: timedelta = timedelta(seconds=2)


class WorkerSettings(BaseModel):
    # Events scored per transaction and partition.
    batch: int = Field(default=2000, ge=1, le=20_000)
    # Without a stream (PLAUDIT_STREAM_URL unset), how often workers look at the log.
    poll: timedelta = timedelta(milliseconds=200)
    # The scale-out mode: a worker starts a scoring step at most this often. A step costs
    # about 6 ms of CPU (worker and PostgreSQL together) whatever its size, and a worker
    # steps whenever a message has come, so at 1,000 - 5,000 events/s steps of a few dozen
    # events came every ~20 ms: 40 ms took a third of a core off the workers and
    # PostgreSQL, for ~20 ms more from event to leaderboard at the median (bench/README.md).
    # A step that takes longer (a backlog) is followed by the next at once; 0 steps as
    # soon as messages come.
    step_interval: timedelta = Field(
        default=timedelta(milliseconds=40), ge=timedelta(0), le=timedelta(seconds=10)
    )
    # The embedded mode, on a machine of 2 CPUs or more: while the log is behind by two
    # batches or more, a helper process evaluates the next batch while one is written.
    ahead: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PLAUDIT_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path("data")
    # Default: a SQLite file in data_dir (the embedded mode).
    database_url: str | None = None
    # Connections per process (PostgreSQL).
    database_pool: int = Field(default=8, ge=1, le=200)
    # Leaderboards live in Redis when given (redis://host:6379/0), else in this process.
    redis_url: str | None = None
    # NATS JetStream (nats://host:4222): how the scale-out mode's API processes tell the
    # scoring workers about new events. Without it the workers poll the log.
    stream_url: str | None = None
    # Default tenant created in the embedded mode.
    default_tenant: str = "default"
    log_level: str = "info"
    api: ApiSettings = ApiSettings()
    ingest: IngestSettings = IngestSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    leaderboards: LeaderboardSettings = LeaderboardSettings()
    webhooks: WebhookSettings = WebhookSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    oidc: OidcSettings = OidcSettings()
    tls: TlsSettings = TlsSettings()
    stream: StreamSettings = StreamSettings()
    worker: WorkerSettings = WorkerSettings()

    @model_validator(mode="after")
    def _known_database(self) -> Settings:
        url = self.database_url
        if url is None:
            return self
        scheme = url.split(":", 1)[0]
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError(
                f"PLAUDIT_DATABASE_URL: unsupported database {scheme!r} "
                "(sqlite:///path or postgresql://user@host:5432/name)"
            )
        if self.scale_out and not self.redis_url:
            raise ValueError(
                "PLAUDIT_REDIS_URL is required with PostgreSQL: several processes share the "
                "leaderboards, rate limits and live streams through Redis"
            )
        return self

    @property
    def scale_out(self) -> bool:
        """PostgreSQL (with Redis, and NATS when given): many API and worker processes."""
        return self.database_url is not None and self.database_url.startswith("postgres")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'plaudit.db').resolve()}"

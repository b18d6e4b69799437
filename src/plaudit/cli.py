"""The ``plaudit`` command. Every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from plaudit.errors import PlauditError
from plaudit.runtime import collect_rarely, settle

app = typer.Typer(
    name="plaudit",
    help="Plaudit: a self-hosted gamification engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
rules_app = typer.Typer(help="Rule-set documents.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

out = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A failure to report as one line."""


def _settings() -> Any:
    from plaudit.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"invalid setting {where}: {first['msg']}") from None


def _container() -> Any:
    from plaudit.bootstrap import build
    from plaudit.services.audit import set_actor

    set_actor("cli")  # what the audit log records of changes made here
    return build(_settings())


def _prepare(container: Any) -> None:
    """Before a command works on the store: the embedded mode migrates as it starts; the
    scale-out mode checks its dependencies and schema (``plaudit migrate`` migrates)."""
    from plaudit.bootstrap import prepare_embedded, prepare_scale_out

    if container.settings.scale_out:
        prepare_scale_out(container)
    else:
        prepare_embedded(container)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    demo: Annotated[
        bool, typer.Option(help="Load the demo program and stream demo events")
    ] = False,
    demo_rate: Annotated[float, typer.Option(help="Demo events per second")] = 5.0,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (scale-out mode only)")
    ] = 1,
) -> None:
    """Run the API. Embedded mode (SQLite): one process with the workers inside. Scale-out
    mode (PostgreSQL): API processes only; run `plaudit worker` beside them."""
    import uvicorn

    from plaudit.api.app import create_app
    from plaudit.api.tls import server_options
    from plaudit.bootstrap import build, prepare_embedded

    settings = _settings()
    host = host or settings.api.host
    port = port if port is not None else settings.api.port
    if settings.scale_out:
        if demo:
            raise CliError("--demo runs in the embedded mode (unset PLAUDIT_DATABASE_URL)")
        _serve_scale_out(settings, host, port, workers, access_log)
        return
    if workers > 1:
        raise CliError(
            "--workers needs the scale-out mode (PLAUDIT_DATABASE_URL=postgresql://…): "
            "the embedded mode is one process"
        )
    if demo:
        # The demo delivers webhooks to itself, on 127.0.0.1: development only.
        settings.webhooks.allow_loopback = True
    # Bind first: a busy port fails in one line, before anything is written.
    sock = _listen(host, port)
    container = build(settings)
    created = prepare_embedded(container)
    background = _embedded_workers(container)
    extra = []
    if demo:
        extra.append(_start_demo(container, host, port, demo_rate, background))
    api = create_app(container, background=background, on_shutdown=[container.close], extra=extra)
    url = f"http://{host}:{port}"
    out.print(f"[bold]Plaudit[/] on [cyan]{url}[/]  (docs: {url}/docs)")
    out.print(f"Data: {container.settings.resolved_database_url}")
    if created is not None:
        out.print(
            f"[bold yellow]Admin API key (shown once, store it now):[/] {created.secret}",
            soft_wrap=True,
        )
        auth = f"-H 'Authorization: Bearer {created.secret}'"
        out.print(f"Try: curl {auth} '{url}/v1/events?limit=5'", soft_wrap=True)
        if demo:
            player = f"{url}/v1/players/lms:ada0@example.com"
            out.print(f"     curl {auth} '{player}'", soft_wrap=True)
            out.print(f"     curl -N {auth} '{player}/notifications/stream'", soft_wrap=True)
            out.print(f"     curl {auth} '{url}/demo/webhook-inbox'", soft_wrap=True)
    else:
        out.print("Admin key: created on first start; make another with `plaudit keys create`.")
    sys.stdout.flush()
    settle()
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=access_log,
        **server_options(settings.tls),
    )
    try:
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    finally:
        container.close()
        sock.close()


def _serve_scale_out(settings: Any, host: str, port: int, workers: int, access_log: bool) -> None:
    """Check the dependencies and the schema, make the first admin key if there is none,
    then run ``workers`` API processes on one listening socket (uvicorn's supervisor
    restarts any that dies)."""
    import uvicorn

    from plaudit.api.tls import server_options
    from plaudit.bootstrap import build, prepare_scale_out

    sock = _listen(host, port)
    sock.close()  # the port is free; uvicorn binds it again for its processes
    container = build(settings)
    try:
        created = prepare_scale_out(container)
    finally:
        container.close()
    out.print(
        f"[bold]Plaudit[/] scale-out API on [cyan]http://{host}:{port}[/], {workers} process(es)"
    )
    if created is not None:
        out.print(
            f"[bold yellow]Admin API key (shown once, store it now):[/] {created.secret}",
            soft_wrap=True,
        )
    sys.stdout.flush()
    uvicorn.run(
        "plaudit.api.asgi:scale_out_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=access_log,
        **server_options(settings.tls),
    )


@app.command()
def worker() -> None:
    """Run a scale-out worker: scoring of its share of the log's partitions, and (one worker
    at a time each) the leaderboard projection, the webhook dispatcher and the janitors."""
    from plaudit.bootstrap import build, check_dependencies
    from plaudit.workers.run import run_worker

    settings = _settings()
    if not settings.scale_out:
        raise CliError(
            "plaudit worker is the scale-out mode's (PLAUDIT_DATABASE_URL=postgresql://…); "
            "the embedded mode's workers run inside plaudit serve"
        )
    container = build(settings)
    try:
        check_dependencies(container)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        out.print("[bold]Plaudit[/] worker started")
        sys.stdout.flush()
        settle()
        asyncio.run(run_worker(container))
    finally:
        container.close()


def _embedded_workers(container: Any) -> list[Any]:
    """The in-process workers of the embedded mode, each woken by the one before it: ingest
    wakes scoring, scoring wakes the projection and the webhook dispatcher."""
    from plaudit.bootstrap import dispatcher
    from plaudit.workers.maintenance import IdempotencyJanitor, OutboxJanitor, PlayerIndexer
    from plaudit.workers.projector import Projector
    from plaudit.workers.scorer import ScoringWorker
    from plaudit.workers.wakeup import Wakeup

    hooks = dispatcher(container)
    scoring_wakeup = Wakeup()
    container.ingest.on_commit = scoring_wakeup.set

    def after_batch() -> None:
        container.leaderboards.sync()
        hooks.wakeup.set()  # the batch may have written messages

    return [
        IdempotencyJanitor(container.idempotency).run,
        ScoringWorker(container.scoring, after_batch=after_batch, wakeup=scoring_wakeup).run,
        Projector(
            container.leaderboards,
            container.settings.leaderboards.reconcile_every,
            closings=container.closings,
        ).run,
        hooks.run,
        OutboxJanitor(container.dispatch, container.settings.webhooks.retention).run,
        PlayerIndexer(container.event_log).run,
    ]


def _start_demo(container: Any, host: str, port: int, rate: float, background: list[Any]) -> Any:
    """Load the demo program, feed it events, and subscribe the demo's own webhook inbox;
    the inbox's router."""
    from plaudit.api.routes import demo_inbox
    from plaudit.services.demo import (
        ensure_demo_badges,
        ensure_demo_rules,
        ensure_demo_webhook,
        load_demo_program,
    )
    from plaudit.workers.demo_feed import DemoFeed

    tenant = container.default_tenant
    ensure_demo_rules(container.rulesets, tenant)
    count = load_demo_program(container.ingest, container.players, tenant)
    ensure_demo_badges(container.badges, tenant)
    inbox = demo_inbox.DemoInbox()
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared
    inbox_url = f"http://{local}:{port}{demo_inbox.PATH}"
    inbox.secrets = ensure_demo_webhook(container.webhooks, tenant, inbox_url)
    background.append(DemoFeed(container, rate).run)
    out.print(
        f"[green]Demo program loaded[/]: {count} people; streaming {rate:g} events/s; "
        f"webhooks signed and delivered to {inbox_url}",
        soft_wrap=True,
    )
    return demo_inbox.router_for(inbox)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say they are TCP,
    # and without it small answers wait for the peer's delayed ACK (~40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from plaudit.store import migrate as migrations

    container = _container()
    try:
        before = migrations.current_revision(container.db.engine)
        migrations.upgrade(container.db.engine)
        after = migrations.current_revision(container.db.engine)
    finally:
        container.close()
    if before == after:
        out.print(f"Schema already current ({after}).")
    else:
        out.print(f"Schema migrated from {before or 'empty'} to {after}.")


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="Server to send to")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="PLAUDIT_API_KEY", help="Key with events:write (default: make one)"),
    ] = None,
    rate: Annotated[float, typer.Option(min=0.1, help="Events per second")] = 100.0,
    count: Annotated[int, typer.Option(min=1, help="Events to send")] = 1000,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Events per request")] = 50,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: new each run)")] = None,
) -> None:
    """Load the demo program and stream synthetic LMS and CRM events to a running server.

    Without --api-key it works on the local data directory: loads the demo program there and
    makes an events:write key for itself.
    """
    import time

    from plaudit.workers.demo_feed import send_over_http

    start_after: dict[str, int] = {}
    if api_key is None:
        from plaudit.domain.auth import Scope
        from plaudit.services.demo import ensure_demo_badges, ensure_demo_rules, load_demo_program

        container = _container()
        try:
            _prepare(container)
            ensure_demo_rules(container.rulesets, container.default_tenant)
            load_demo_program(container.ingest, container.players, container.default_tenant)
            ensure_demo_badges(container.badges, container.default_tenant)
            api_key = container.tenancy.create_key(
                container.default_tenant, "demo", frozenset({Scope.EVENTS_WRITE})
            ).secret
            start_after = container.event_log.last_sequences(container.default_tenant)
        finally:
            container.close()
    send_over_http(
        url,
        api_key,
        rate=rate,
        count=count,
        batch=batch,
        seed=seed if seed is not None else time.time_ns() % 1_000_000,
        console=out,
        start_after=start_after,
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="events:write, players:write, read, rules:write, admin, keys:write or "
            "tenants:write (repeatable)"
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(help="owner, admin, editor, viewer or ingest (repeatable)"),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: the default tenant)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create an API key and print its secret (once)."""
    from plaudit.domain.auth import parse_scopes, scopes_of_roles

    try:
        scopes = scopes_of_roles(role or [])
    except ValueError as exc:
        raise CliError(f"--role: {exc}") from None
    if scope or not scopes:
        try:
            scopes |= parse_scopes(scope or [])
        except ValueError as exc:
            raise CliError(f"--scope: {exc}") from None
    container = _container()
    try:
        _prepare(container)
        created = container.tenancy.create_key(tenant or container.default_tenant, name, scopes)
    finally:
        container.close()
    if as_json:
        print(
            json.dumps(
                {
                    "id": created.record.id,
                    "key": created.secret,
                    "scopes": sorted(created.record.scopes),
                }
            )
        )
    else:
        record = created.record
        out.print(f"Created {record.id} ({', '.join(sorted(scopes))}) for {record.tenant_id}.")
        out.print("Secret (shown once, store it now):")
        print(created.secret)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
) -> None:
    """List API keys (never their secrets)."""
    from rich.table import Table

    container = _container()
    try:
        _require_schema(container)
        records = container.tenancy.list_keys(tenant)
    finally:
        container.close()
    table = Table("id", "tenant", "name", "prefix", "scopes", "created", "revoked")
    for column in table.columns:
        column.no_wrap = True
    for r in records:
        table.add_row(
            r.id,
            r.tenant_id,
            r.name,
            r.display_prefix + "…",
            " ".join(sorted(r.scopes)),
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (key_…) or its prefix")],
) -> None:
    """Revoke a key: it stops working at once."""
    container = _container()
    try:
        _require_schema(container)
        record = container.tenancy.revoke_key(None, key_id)
    finally:
        container.close()
    out.print(f"Revoked {record.id} ({record.name}).")


@app.command()
def replay(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all)")] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Processes sharing out the players of a long log (default: one per CPU, "
            "up to 8; a log under 100,000 events is replayed in this one)",
        ),
    ] = min(8, os.cpu_count() or 1),
) -> None:
    """Rebuild all derived state (ledger, awards, levels, player states) from the event log."""
    import time

    collect_rarely()  # a replay in this process allocates as the scoring worker does
    container = _container()
    try:
        _require_schema(container)
        started = time.monotonic()
        count = container.scoring.replay(tenant, processes=processes)
        container.leaderboards.rebuild()  # boards were rebuilt in SQL: so is the projection
    finally:
        container.close()
    out.print(f"Replayed {count} events in {time.monotonic() - started:.1f} s.")


@app.command()
def reconcile() -> None:
    """Compare the leaderboard projection (memory or Redis) with SQL and repair any drift.

    The server does this daily by itself; with Redis, this command checks the shared copy.
    With the embedded in-memory projection, it checks a copy rebuilt here (always equal)."""
    container = _container()
    try:
        _require_schema(container)
        container.leaderboards.start()
        report = container.leaderboards.reconcile()
    finally:
        container.close()
    out.print(
        f"Checked {report.windows} windows, {report.subjects} standings: "
        f"{report.missing} missing, {report.extra} extra, {report.wrong} wrong."
    )
    for name in report.repaired:
        out.print(f"  repaired {name}")
    for name in report.retired:
        out.print(f"  retired closed window {name}")
    if not report.drift:
        out.print("[green]No drift.[/]")


@app.command()
def simulate(
    ruleset: Annotated[
        str | None, typer.Argument(help="Rule set id (its draft is simulated)")
    ] = None,
    file: Annotated[str | None, typer.Option(help="Simulate this document instead")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: the default tenant)")] = None,
) -> None:
    """Run a draft over the event log and show what would change against the live version."""
    from pathlib import Path

    from rich.table import Table

    if (ruleset is None) == (file is None):
        raise CliError("name a rule set id or give --file, not both")
    container = _container()
    try:
        _require_schema(container)
        tenant_id = tenant or container.default_tenant
        source = Path(file).read_text("utf-8") if file else None
        sim = container.simulation.simulate(tenant_id, ruleset, source=source)
    finally:
        container.close()
    live = f"version {sim.live_version}" if sim.live_version else "no live rule set"
    out.print(f"{sim.events} events, {sim.players} players; compared with {live}.")
    points = Table("currency", "live", "draft", "delta", "gaining", "losing")
    for c in sim.currencies:
        delta = round(c.draft_total - c.live_total, 4)
        points.add_row(
            c.currency,
            f"{c.live_total:g}",
            f"{c.draft_total:g}",
            f"{delta:+g}",
            str(c.gaining),
            str(c.losing),
        )
    out.print(points)
    badges = Table("badge", "live holders", "draft holders", "gained", "lost")
    for b in sim.badges:
        badges.add_row(
            b.badge, str(b.live_holders), str(b.draft_holders), str(b.gained), str(b.lost)
        )
    out.print(badges)
    if sim.rule_errors:
        out.print(f"{sim.rule_errors} rule errors under the draft.")


@rules_app.command("validate")
def rules_validate(
    file: Annotated[str, typer.Argument(help="A rule set, YAML or JSON")],
) -> None:
    """Check a rule-set document; each problem names its line, rule and field."""
    from pathlib import Path

    from plaudit.rules.document import DocumentInvalid, load

    try:
        text = Path(file).read_text("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{file}: not a UTF-8 text file") from None
    try:
        doc, compiled = load(text)
    except DocumentInvalid as exc:
        for p in exc.problems:
            line = f"{p.line}:" if p.line else ""
            owner = f" {p.rule}:" if p.rule else ""
            err.print(
                f"{file}:{line}{owner} {p.field}: {p.message}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        raise typer.Exit(1) from None
    out.print(
        f"{file}: valid ({len(doc.rules)} points rules, {len(doc.badges)} badges, "
        f"{len(doc.leaderboards)} leaderboards, "
        f"event types: {', '.join(sorted(compiled.event_types)) or 'none'})",
        soft_wrap=True,
        highlight=False,
    )


@rules_app.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of rule-set documents."""
    from plaudit.rules.model import json_schema

    print(json.dumps(json_schema(), indent=2))


def _require_schema(container: Any) -> None:
    from plaudit.store import migrate as migrations

    migrations.ensure_current(container.db.engine)


def main() -> None:
    """Entry point: click reports usage errors (exit 2); ours become one line (exit 1)."""
    import sqlalchemy.exc

    try:
        app()
    except (CliError, PlauditError) as exc:
        _fail(exc.detail if isinstance(exc, PlauditError) else str(exc))
    except sqlalchemy.exc.OperationalError as exc:
        _fail(f"database: {exc.orig}")
    except OSError as exc:
        _fail(str(exc))
    except Exception as exc:
        if os.environ.get("PLAUDIT_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (set PLAUDIT_DEBUG=1 for the traceback)",
            code=70,
        )


def _fail(message: str, code: int = 1) -> None:
    err.print(f"plaudit: error: {message}", highlight=False, soft_wrap=True, markup=False)
    sys.exit(code)

"""`python -m plaudit` with experimental patches, to measure a fix before making it in src/.

    BENCH_WHATIF=nodelay,gc-freeze .venv/bin/python bench/ingest.py --entry bench/whatif_serve.py

BENCH_WHATIF lists patches, comma-separated (none: the product as it is):
  nodelay            the listening socket is made as IPPROTO_TCP, so that asyncio turns on
                     TCP_NODELAY for each connection (the product does since d75d4bc)
  uvloop             run the server on uvloop rather than the default asyncio loop
  gc-freeze          gc.collect(); gc.freeze() once the app is built (likewise since d75d4bc)
  no-scorer          do not start the in-process scoring worker (before d75d4bc it read every
                     event under the write lock, even with no rule set published)
  drop-player-index  drop ix_events_tenant_id_player_id_position after migrating: a
                     measurement of that index's cost, NOT a fix (reads by player need it)
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from typing import Any

import anyio

import plaudit.api.app as app_module
import plaudit.bootstrap as bootstrap_module
from plaudit import cli
from plaudit.bootstrap import Container
from plaudit.services.tenancy import CreatedKey
from plaudit.workers.scorer import ScoringWorker

KNOWN = {"nodelay", "uvloop", "gc-freeze", "no-scorer", "drop-player-index"}


class TcpSocket(socket.socket):
    """A TCP socket that says so (proto IPPROTO_TCP), which asyncio requires for NODELAY."""

    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        if fileno is None and type == socket.SOCK_STREAM and proto in (-1, 0):
            proto = socket.IPPROTO_TCP
        super().__init__(family, type, proto, fileno)


def patch(names: set[str]) -> None:
    if "nodelay" in names:
        socket.socket = TcpSocket  # type: ignore[misc]
    if "uvloop" in names:
        import uvloop

        setattr(asyncio, "run", uvloop.run)  # noqa: B010 (cli.serve calls asyncio.run)
    if "gc-freeze" in names:
        create_app = app_module.create_app

        def create_app_then_freeze(*args: Any, **kwargs: Any) -> Any:
            app = create_app(*args, **kwargs)
            gc.collect()
            gc.freeze()
            return app

        app_module.create_app = create_app_then_freeze
    if "no-scorer" in names:

        async def no_scoring(self: ScoringWorker) -> None:
            await anyio.sleep_forever()

        setattr(ScoringWorker, "run", no_scoring)  # noqa: B010
    if "drop-player-index" in names:
        prepare = bootstrap_module.prepare_embedded

        def prepare_then_drop(container: Container) -> CreatedKey | None:
            created = prepare(container)
            with container.db.engine.begin() as conn:
                conn.exec_driver_sql("DROP INDEX IF EXISTS ix_events_tenant_id_player_id_position")
            return created

        bootstrap_module.prepare_embedded = prepare_then_drop


def main() -> None:
    names = {n.strip() for n in os.environ.get("BENCH_WHATIF", "").split(",") if n.strip()}
    if names - KNOWN:
        sys.exit(f"whatif: unknown BENCH_WHATIF {sorted(names - KNOWN)}; known: {sorted(KNOWN)}")
    patch(names)
    sys.argv[0] = "plaudit"
    cli.main()


if __name__ == "__main__":
    main()

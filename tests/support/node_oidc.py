"""npm's oidc-provider (panva) on 127.0.0.1, for the OAuth2 client-credentials grant that
oidc-provider-mock lacks: JWT access tokens (RFC 9068) for the audience ``plaudit``, with
clients ``crm-sync`` (tenant default) and ``acme-sync`` (tenant acme), both ``ingest``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from tests.support.server import spawn_with_port_file, stop_process

HERE = Path(__file__).parent / "oidc_node"


def require_node() -> None:
    """Skip (naming why) without Node.js and the installed package; fail instead when the
    suite requires its services (CI)."""
    problem = None
    if shutil.which("node") is None:
        problem = "node is not installed"
    elif not (HERE / "node_modules" / "oidc-provider").is_dir():
        problem = f"run `npm ci --prefix {HERE}` (make test does)"
    if problem is not None:
        if os.environ.get("PLAUDIT_REQUIRE_SERVICES") == "1":
            raise AssertionError(f"the Node.js OpenID provider is required: {problem}")
        pytest.skip(f"client-credentials tests need npm's oidc-provider: {problem}")


class NodeProvider:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> NodeProvider:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process, self.port = spawn_with_port_file(
            ["node", str(HERE / "provider.mjs"), str(self.workdir / "port")],
            port_file=self.workdir / "port",
            log_path=self.workdir / "provider.log",
            what="the Node.js OpenID provider",
            cwd=HERE,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def client_credentials(self, client_id: str, secret: str) -> str:
        """An access token through the real grant (token endpoint, client authentication)."""
        answer = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "events"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

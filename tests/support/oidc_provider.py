"""A real OpenID provider for tests: PyPI ``oidc-provider-mock`` (a Flask app) in its own process.

``OidcProvider`` starts it on a free 127.0.0.1 port, drives its real flows over HTTP and
stops it by PID. Run as a script, this file is that process (``serve``).

Why a process and not a thread: the provider's library (authlib) raises deprecation warnings
on every token it issues, and the suite turns warnings into errors process-wide.

What the provider does and does not do (oidc-provider-mock 0.3.4, read from its source):

- Authorization code flow: ``/oauth2/authorize`` shows a form; posting ``sub`` logs that
  user in and redirects with a code; ``/oauth2/token`` trades it. Any client id and secret
  are accepted. PKCE parameters are sent but **not enforced** (no CodeChallenge extension).
- Access tokens are **opaque** strings; the **ID token** is the JWT (RS256, ``typ: JWT``,
  ``aud`` = the client id, the user's non-standard claims copied in). Tests verify ID tokens.
- User claims are set through its ``PUT /users/<sub>`` endpoint.
- No client-credentials grant (``unsupported_grant_type``), no key rotation, and no ``kid``
  in token headers. This process adds, for tests only: the signing key comes from the test
  (``POST /test/signing-key``, also how a test rotates it), an optional ``kid`` header
  (``--kid-header``, as real providers send), and ``GET /test/stats`` counting discovery
  and JWKS requests.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.server import spawn_with_port_file, stop_process

HOST = "127.0.0.1"
REDIRECT_URI = "http://127.0.0.1/callback"


@dataclass(frozen=True)
class ProviderKey:
    """An RSA signing key held by the test, so that it can also sign tokens by hand."""

    private_key: rsa.RSAPrivateKey
    kid: str = field(default_factory=lambda: "key-" + secrets.token_hex(8))

    @staticmethod
    def generate() -> ProviderKey:
        return ProviderKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid}


@dataclass(frozen=True)
class Tokens:
    """What the token endpoint answered."""

    access_token: str
    id_token: str


class OidcProvider:
    """The provider process; ``start`` and ``stop`` (also as a context manager)."""

    def __init__(
        self,
        workdir: Path,
        *,
        kid_header: bool = True,
        token_max_age: timedelta = timedelta(hours=1),
    ) -> None:
        self.workdir = workdir
        self.kid_header = kid_header
        self.token_max_age = token_max_age
        self.key = ProviderKey.generate()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "oidc-provider.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "initial-key.pem"
        key_file.write_text(self.key.private_pem())
        env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
        env["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # authlib refuses http otherwise
        port_file = self.workdir / "port"
        # As a module from the repository's root, so that it imports tests.support like us.
        command = [sys.executable, "-m", "tests.support.oidc_provider"]
        command += ["--port-file", str(port_file)]
        command += ["--key-file", str(key_file), "--kid", self.key.kid]
        command += ["--token-max-age", str(int(self.token_max_age.total_seconds()))]
        command += ["--kid-header"] if self.kid_header else []
        self._process, self.port = spawn_with_port_file(
            command,
            port_file=port_file,
            log_path=self.log_path,
            what="OIDC provider",
            env=env,
            cwd=Path(__file__).parents[2],
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_process(process)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.issuer, timeout=10.0)

    async def set_user(self, sub: str, claims: dict[str, object]) -> None:
        """Give user ``sub`` these claims (the provider's own ``PUT /users/<sub>``)."""
        async with self._client() as http:
            answer = await http.put(f"/users/{sub}", json=claims)
        assert answer.status_code == 204, answer.text

    async def login(self, *, client_id: str, sub: str, scope: str = "openid") -> Tokens:
        """The authorization code flow with PKCE, as a browser and a client would do it."""
        code_verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(code_verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        async with self._client() as http:
            discovery = (await http.get("/.well-known/openid-configuration")).json()
            params = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "state": state,
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            form = await http.get(discovery["authorization_endpoint"], params=params)
            assert form.status_code == 200, form.text
            consent = await http.post(
                discovery["authorization_endpoint"], params=params, data={"sub": sub}
            )
            assert consent.status_code == 302, consent.text
            query = parse_qs(urlsplit(consent.headers["location"]).query)
            assert query["state"] == [state]
            answer = await http.post(
                discovery["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT_URI,
                    "code_verifier": code_verifier,
                },
                auth=(client_id, "client-secret"),
            )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return Tokens(access_token=body["access_token"], id_token=body["id_token"])

    async def token_request(self, data: dict[str, str], client_id: str) -> httpx.Response:
        """A raw call to the token endpoint, for grants the provider may not support."""
        async with self._client() as http:
            return await http.post("/oauth2/token", data=data, auth=(client_id, "client-secret"))

    async def rotate_key(self, key: ProviderKey | None = None) -> ProviderKey:
        """Sign with ``key`` (a new one by default) from now on; the JWKS publishes only it."""
        key = key or ProviderKey.generate()
        async with self._client() as http:
            answer = await http.post(
                "/test/signing-key", json={"pem": key.private_pem(), "kid": key.kid}
            )
        assert answer.status_code == 204, answer.text
        self.key = key
        return key

    async def jwks_requests(self) -> int:
        """How many times the JWKS was served since start."""
        async with self._client() as http:
            stats = (await http.get("/test/stats")).json()
        count: int = stats["jwks"]
        return count


def serve(argv: list[str]) -> None:
    """The provider process: serve until SIGTERM, after writing the port to --port-file."""
    import warnings

    warnings.simplefilter("ignore")  # authlib's deprecation notices, on every token
    import flask
    import oidc_provider_mock
    import werkzeug.serving
    from oidc_provider_mock import _app

    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--kid", required=True)
    parser.add_argument("--token-max-age", type=int, required=True)
    parser.add_argument("--kid-header", action="store_true")
    args = parser.parse_args(argv)

    if args.kid_header:
        plain_header = _app.OpenIDCode.get_encode_header

        def header_with_kid(self: object, client: object) -> dict[str, Any]:
            header: dict[str, Any] = dict(plain_header(self, client))
            header["kid"] = flask.g.oidc_provider_mock_storage.jwk.kid
            return header

        _app.OpenIDCode.get_encode_header = header_with_kid

    app: flask.Flask = oidc_provider_mock.app(
        access_token_max_age=timedelta(seconds=args.token_max_age)
    )
    requests = {"jwks": 0, "discovery": 0}

    @app.before_request
    def count() -> None:
        if flask.request.path == "/jwks":
            requests["jwks"] += 1
        elif flask.request.path == "/.well-known/openid-configuration":
            requests["discovery"] += 1

    @app.post("/test/signing-key")
    def set_signing_key() -> tuple[str, int]:
        body = flask.request.get_json()
        # The provider's own authlib key class (its storage expects one).
        key = _app.jose.RSAKey.import_key(body["pem"].encode(), {"kid": body["kid"]})
        flask.g.oidc_provider_mock_storage.jwk = key
        return "", 204

    @app.get("/test/stats")
    def stats() -> dict[str, int]:
        return requests

    initial = {"pem": args.key_file.read_text(), "kid": args.kid}
    assert app.test_client().post("/test/signing-key", json=initial).status_code == 204
    requests["jwks"] = requests["discovery"] = 0

    server = werkzeug.serving.make_server(HOST, 0, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    partial = args.port_file.with_suffix(".partial")
    partial.write_text(str(server.server_port))
    partial.rename(args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1:])

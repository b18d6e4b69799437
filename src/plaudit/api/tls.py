"""Mutual TLS when Plaudit serves TLS itself: a client certificate signed by the configured
client CA stands for a principal, as an API key does.

uvicorn does not pass the peer's certificate to the application, so the HTTP protocol is
subclassed to read it once per connection (after the handshake verified it against the
CA) and hand it to every request of that connection in ``scope["extensions"]["tls"]``.

Who a certificate names: its subject's ``O`` is the tenant, each ``OU`` a role (owner,
admin, editor, viewer, ingest — never player), its ``CN`` the service (the audit log's
``mtls:<CN>``). A request with an ``Authorization`` header is judged by that header.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from plaudit.settings import TlsSettings

try:  # uvicorn[standard] brings httptools, the faster parser; h11 otherwise
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - httptools is a dependency
    _Base = H11Protocol  # type: ignore[assignment,misc]


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    common_name: str
    organization: str | None
    units: tuple[str, ...]


def certificate_of(peer: dict[str, Any] | None) -> ClientCertificate | None:
    """The fields Plaudit reads from ``SSLSocket.getpeercert()``; None without a CN."""
    if not peer:
        return None
    fields: dict[str, list[str]] = {}
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            fields.setdefault(name, []).append(value)
    names = fields.get("commonName")
    if not names:
        return None
    organization = fields.get("organizationName", [None])[0]
    units = tuple(fields.get("organizationalUnitName", ()))
    return ClientCertificate(names[0], organization, units)


class _WithCertificate:
    def __init__(self, app: ASGIApp, certificate: ClientCertificate) -> None:
        self.app = app
        self.certificate = certificate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extensions = scope.setdefault("extensions", {})
        extensions.setdefault("tls", {})["client_certificate"] = self.certificate
        await self.app(scope, receive, send)


class ClientCertificateProtocol(_Base):
    """uvicorn's HTTP protocol, plus the verified client certificate of the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        certificate = certificate_of(tls.getpeercert() if tls is not None else None)
        if certificate is not None:
            self.app = _WithCertificate(self.app, certificate)


def client_certificate(scope: Scope) -> ClientCertificate | None:
    found = scope.get("extensions", {}).get("tls", {}).get("client_certificate")
    return found if isinstance(found, ClientCertificate) else None


def server_options(settings: TlsSettings) -> dict[str, Any]:
    """uvicorn.Config options for ``settings``: none for plain HTTP."""
    if settings.cert_file is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.cert_file),
        "ssl_keyfile": str(settings.key_file),
    }
    if settings.client_ca_file is not None:
        options |= {
            "ssl_ca_certs": str(settings.client_ca_file),
            # Optional: a client without a certificate may still present a key or token; one
            # with a certificate the CA did not sign fails the handshake.
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
            "http": ClientCertificateProtocol,
        }
    return options

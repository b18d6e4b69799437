"""Mutual TLS against a real uvicorn server: a client certificate from the configured CA is
a credential (subject O = tenant, OU = role, CN = service); without one, keys still work;
a certificate from another CA fails the handshake. The CA is a throwaway (trustme)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
import uvicorn

from plaudit.api.app import create_app
from plaudit.api.tls import server_options
from plaudit.bootstrap import Container, build, prepare_embedded
from plaudit.domain.auth import ROLES, Role
from plaudit.settings import Settings, TlsSettings
from tests.conftest import new_key
from tests.support.server import free_port

pytestmark = pytest.mark.slow


@dataclass
class Served:
    url: str
    ca: trustme.CA
    container: Container
    tmp: Path

    def client(self, identity: trustme.LeafCert | None = None) -> httpx.Client:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if identity is not None:
            identity.configure_cert(context)
        return httpx.Client(base_url=self.url, verify=context, timeout=10)


def _client_cert(ca: trustme.CA, cn: str, org: str, role: str) -> trustme.LeafCert:
    """A client certificate: subject CN (the service), O (the tenant), OU (a role)."""
    return ca.issue_cert(
        f"{cn}.clients.test", common_name=cn, organization_name=org, organization_unit_name=role
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("server.pem", "server.key", "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = TlsSettings(cert_file=cert_file, key_file=key_file, client_ca_file=ca_file)
    container = build(Settings(data_dir=tmp_path / "data", _env_file=None, tls=tls))
    prepare_embedded(container)
    port = free_port()
    config = uvicorn.Config(
        create_app(container),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **server_options(tls),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the TLS server did not start"
        time.sleep(0.02)
    try:
        yield Served(f"https://127.0.0.1:{port}", ca, container, tmp_path)
    finally:
        server.should_exit = True
        thread.join(10)
        container.close()


def test_a_client_certificate_from_the_ca_is_a_credential(served: Served) -> None:
    crm = _client_cert(served.ca, "crm", "default", "viewer")
    with served.client(crm) as client:
        assert client.get("/v1/events").status_code == 200
        refused = client.post("/v1/badges", json={"id": "b", "name": "B"})
        assert refused.status_code == 403  # a viewer: reads, never writes
    editor = _client_cert(served.ca, "cms", "default", "editor")
    with served.client(editor) as client:
        assert client.post("/v1/badges", json={"id": "b", "name": "B"}).status_code == 201
        admin = new_key(served.container, *ROLES[Role.ADMIN])
        log = client.get(
            "/v1/audit",
            headers={"Authorization": f"Bearer {admin}"},
            params={"action": "badge.create"},
        ).json()
        assert log["items"][0]["actor"] == "mtls:cms"


def test_without_a_certificate_keys_work_and_nothing_else_does(served: Served) -> None:
    with served.client() as client:
        assert client.get("/v1/events").status_code == 401
        key = new_key(served.container, *ROLES[Role.VIEWER])
        answer = client.get("/v1/events", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200


def test_certificates_naming_no_known_tenant_or_the_player_role_are_refused(
    served: Served,
) -> None:
    for cert in (
        _client_cert(served.ca, "x", "acme", "admin"),  # no such tenant
        _client_cert(served.ca, "x", "default", "player"),
    ):
        with served.client(cert) as client:
            assert client.get("/v1/events").status_code == 401


def test_a_certificate_from_another_ca_fails_the_handshake(served: Served) -> None:
    stranger = _client_cert(trustme.CA(), "mallory", "default", "owner")
    with served.client(stranger) as client, pytest.raises(httpx.TransportError):
        client.get("/v1/events")

"""TLS settings become uvicorn options; a client certificate's subject becomes its fields."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from plaudit.api.tls import ClientCertificateProtocol, certificate_of, server_options
from plaudit.settings import TlsSettings


def test_plain_http_tls_and_mutual_tls_options(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
    for path in (cert, key, ca):
        path.write_text("x")
    assert server_options(TlsSettings()) == {}
    served = server_options(TlsSettings(cert_file=cert, key_file=key))
    assert served == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    mutual = server_options(TlsSettings(cert_file=cert, key_file=key, client_ca_file=ca))
    assert mutual["ssl_ca_certs"] == str(ca)
    assert mutual["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert mutual["http"] is ClientCertificateProtocol


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cert_file": "c.pem"}, "go together"),
        ({"client_ca_file": "ca.pem"}, "needs cert_file"),
        ({"cert_file": "missing.pem", "key_file": "k.pem"}, "cert_file: no file"),
    ],
)
def test_incomplete_or_missing_files_are_refused(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    with pytest.raises(ValidationError, match=message):
        TlsSettings(**{k: tmp_path / v for k, v in fields.items()})


def test_a_peer_certificates_subject_gives_service_tenant_and_roles() -> None:
    peer = {
        "subject": (
            (("organizationName", "default"),),
            (("organizationalUnitName", "viewer"),),
            (("organizationalUnitName", "ingest"),),
            (("commonName", "crm"),),
        )
    }
    found = certificate_of(peer)
    assert found is not None
    assert (found.common_name, found.organization, found.units) == (
        "crm",
        "default",
        ("viewer", "ingest"),
    )
    assert certificate_of(None) is None
    assert certificate_of({}) is None
    assert certificate_of({"subject": ((("organizationName", "x"),),)}) is None  # no CN

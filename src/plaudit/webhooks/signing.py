"""Standard Webhooks 1.0 signatures, so receivers can verify deliveries with any of its libraries.

A secret is ``whsec_`` followed by the base64 of the HMAC key (the prefix is optional on input).
The signed content is ``f"{msg_id}.{timestamp}."`` followed by the raw body bytes; the
``webhook-signature`` header carries one ``v1,<base64 HMAC-SHA256>`` per secret, separated by
single spaces, so that during a secret rotation both the new and the old secret verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
SIGNATURE_VERSION = "v1"
SECRET_BYTES = 32
DEFAULT_TOLERANCE = 300  # seconds either side of now; the spec's and the reference libraries' value

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

_TIMESTAMP = re.compile(r"[0-9]+")


class SignatureMismatch(ValueError):
    """The headers do not prove a delivery ours, unaltered and recent; says which check failed."""


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 32 random bytes (Svix's format)."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}." + body)) for one secret."""
    return _sign(_secret_key(secret), msg_id, timestamp, body)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; every secret signs (new and old, in a rotation)."""
    if isinstance(secrets, str):
        # A bare string is a Sequence[str] too: it would sign once per character.
        raise TypeError("secrets must be a sequence of secrets, not a single string")
    if not secrets:
        raise ValueError("at least one webhook secret is required to sign a delivery")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``SignatureMismatch`` unless ``headers`` hold a valid, recent signature of ``body``.

    Header names are matched case-insensitively. The timestamp must lie within ``tolerance``
    seconds of ``now`` (either side), which bounds how long a captured delivery can be replayed.
    A secret that is not base64 raises a plain ``ValueError``: that is a configuration fault,
    not a bad delivery.
    """
    key = _secret_key(secret)
    by_name = {name.lower(): value for name, value in headers.items()}
    missing = [
        name for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER) if not by_name.get(name)
    ]
    if missing:
        raise SignatureMismatch(f"missing header: {', '.join(missing)}")
    timestamp_text = by_name[TIMESTAMP_HEADER].strip()
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise SignatureMismatch(
            f"{TIMESTAMP_HEADER} {timestamp_text!r} is not a whole number of Unix seconds"
        )
    timestamp = int(timestamp_text)
    if timestamp < now - tolerance:
        raise SignatureMismatch(
            f"{TIMESTAMP_HEADER} is {now - timestamp} s old, outside the {tolerance} s tolerance"
        )
    if timestamp > now + tolerance:
        raise SignatureMismatch(
            f"{TIMESTAMP_HEADER} is {timestamp - now} s in the future, "
            f"outside the {tolerance} s tolerance"
        )
    expected = _sign(key, by_name[ID_HEADER], timestamp, body).encode()
    candidates = by_name[SIGNATURE_HEADER].split(" ")
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in candidates):
        raise SignatureMismatch(
            f"no {SIGNATURE_VERSION} signature in {SIGNATURE_HEADER} matches this secret and body"
        )


def _sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a secret; the error never echoes the secret, which would leak it."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Tolerate missing padding, as the reference libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise ValueError(
            f"webhook secret is not valid base64 (expected {SECRET_PREFIX!r} followed by base64)"
        ) from None
    if not key:
        raise ValueError("webhook secret is empty: anyone could sign with an empty key")
    return key

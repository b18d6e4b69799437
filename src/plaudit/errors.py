"""Plaudit's errors: one root, no HTTP in sight (the API maps them to problem+json).

PlauditError
├── InvalidInput            bad input the caller can fix; carries field errors
│   ├── MalformedRequest    the body is not JSON at all
│   ├── PayloadTooLarge     body or batch over the documented limit
│   └── UnsupportedMediaType
├── AuthenticationFailed    missing, malformed, unknown or revoked credentials
├── PermissionDenied        authenticated, but without the needed scope
├── NotFound                the named resource does not exist (in this tenant)
├── Conflict                the request contradicts the current state
│   └── IdempotencyKeyInFlight
├── IdempotencyKeyReused    same key, different request
├── RateLimited             too many requests for a key, a source or a player; retry later
├── ServiceUnavailable      a dependency (Redis) cannot be reached now; retry later
└── ConfigurationError      settings or environment are unusable (CLI, start-up)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field; ``field`` is a dotted path such as ``events[3].occurred_at``."""

    field: str
    message: str


class PlauditError(Exception):
    """Root of every error Plaudit raises on purpose. ``slug`` is the stable problem type."""

    slug = "error"
    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(PlauditError):
    slug = "invalid-input"
    title = "Invalid input"

    def __init__(self, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.errors = tuple(errors)


class MalformedRequest(InvalidInput):
    slug = "malformed-request"
    title = "Malformed request"


class PayloadTooLarge(InvalidInput):
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(InvalidInput):
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class AuthenticationFailed(PlauditError):
    slug = "unauthenticated"
    title = "Authentication required"


class PermissionDenied(PlauditError):
    slug = "forbidden"
    title = "Permission denied"


class NotFound(PlauditError):
    slug = "not-found"
    title = "Not found"


class Conflict(PlauditError):
    slug = "conflict"
    title = "Conflict"


class Contended(Conflict):
    """Another transaction changed the same rows at the same moment (a duplicate key met at
    its commit, a deadlock): nothing was written, and doing it again sees the other's work."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            detail
            or "another request changed the same thing at the same moment; nothing was "
            "written: retry"
        )


class IdempotencyKeyInFlight(Conflict):
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still in progress"


class IdempotencyKeyReused(PlauditError):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class RateLimited(PlauditError):
    slug = "rate-limited"
    title = "Too many requests"


class ServiceUnavailable(PlauditError):
    slug = "service-unavailable"
    title = "A service Plaudit depends on is unavailable"


class ConfigurationError(PlauditError):
    slug = "configuration-error"
    title = "Configuration error"

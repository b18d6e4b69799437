"""The identity provider's keys: discovery once, then the JWKS, refetched sparingly.

Fetch rules (the verifier is the only caller):

- The discovery document is read from ``{issuer}/.well-known/openid-configuration`` (a
  trailing slash of the issuer dropped first, OpenID Connect Discovery section 4); its
  ``issuer`` must equal the configured issuer exactly, and its ``jwks_uri`` must be https
  (or http on a loopback host when the configuration allows it). Redirects are not
  followed, bodies over 512 KiB are refused, and each fetch has a total deadline.
- The first load happens on first use (or in ``load``). After that the provider is asked
  **at most once per refetch interval**, whatever tokens arrive: on an unknown kid, on a
  kid-less token whose signature fails, or when the keys are older than their maximum age.
- Concurrent callers share one fetch: the first starts it as a task, the others await that
  same task (shielded, so a caller that goes away does not cancel it for the rest).
- A failed refetch keeps the keys already held; only a verifier that never loaded any
  fails with IdentityProviderError.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from plaudit.errors import AuthenticationFailed
from plaudit.identity.keys import KeySet, parse_jwks

if TYPE_CHECKING:
    from plaudit.identity.oidc import OidcConfig

log = logging.getLogger("plaudit.identity")

MAX_DOCUMENT_BYTES = 512 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"


class IdentityProviderError(AuthenticationFailed):
    """The identity provider could not be used (unreachable, or an unusable discovery
    document or JWKS), so the token was not judged. An AuthenticationFailed, so callers that
    catch one catch both; the API may answer it with 503 rather than 401."""


def url_problem(url: str, *, allow_http_loopback: bool) -> str | None:
    """Why ``url`` may not be used to reach the provider, or None when it may."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.query or parts.fragment:
        return "must not have a query or a fragment"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback(host):
        return None if allow_http_loopback else "is http: set allow_http_loopback (tests only)"
    return "must be https (http only on a loopback host)"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProviderKeys:
    """The issuer's current KeySet, fetched and refetched by the rules above."""

    def __init__(
        self,
        config: OidcConfig,
        http: Callable[[], httpx.AsyncClient],
        clock: Callable[[], datetime],
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._keys: KeySet | None = None
        self._loaded_at: datetime | None = None
        self._attempted_at: datetime | None = None
        self._jwks_uri: str | None = None
        self._inflight: asyncio.Task[KeySet] | None = None

    async def current(self) -> KeySet:
        """The keys held, loading them first if there are none or they are past max age."""
        if self._keys is not None and self._loaded_at is not None:
            age = self._clock() - self._loaded_at
            if age < self._config.jwks_max_age:
                return self._keys
        return await self.refetch()

    async def refetch(self) -> KeySet:
        """Fresh keys if the interval allows a fetch (or one is running), else the keys held."""
        if self._inflight is None:
            if not self._may_fetch():
                if self._keys is None:
                    raise IdentityProviderError(
                        "the identity provider's keys are unavailable (the last attempt"
                        " failed); the next attempt waits for the refetch interval"
                    )
                return self._keys
            self._attempted_at = self._clock()
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._fetch_done)
        try:
            return await asyncio.shield(self._inflight)
        except IdentityProviderError:
            if self._keys is None:
                raise
            return self._keys

    def _may_fetch(self) -> bool:
        if self._attempted_at is None:
            return True
        elapsed = self._clock() - self._attempted_at
        # A clock that went backwards must not stop refetches for good.
        return elapsed >= self._config.jwks_refetch_interval or elapsed.total_seconds() < 0

    def _fetch_done(self, task: asyncio.Task[KeySet]) -> None:
        self._inflight = None
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so that a failure nobody awaited is not reported as lost.
            log.warning("identity provider fetch failed: %s", task.exception())

    async def _fetch(self) -> KeySet:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        document = await self._get_json(self._jwks_uri, "JWKS")
        try:
            keys = parse_jwks(document, self._config.algorithms)
        except ValueError as exc:
            raise IdentityProviderError(f"the identity provider's JWKS is unusable: {exc}") from exc
        if not keys.keys:
            log.warning("identity provider JWKS at %s has no usable signing key", self._jwks_uri)
        self._keys = keys
        self._loaded_at = self._clock()
        return keys

    async def _discover(self) -> str:
        issuer = self._config.issuer
        document = await self._get_json(issuer.rstrip("/") + DISCOVERY_PATH, "discovery document")
        if not isinstance(document, dict):
            raise IdentityProviderError("the discovery document is not a JSON object")
        named = document.get("issuer")
        if named != issuer:
            raise IdentityProviderError(
                f"the discovery document names issuer {named!r}, not the configured {issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IdentityProviderError("the discovery document has no jwks_uri")
        problem = url_problem(jwks_uri, allow_http_loopback=self._config.allow_http_loopback)
        if problem is not None:
            raise IdentityProviderError(f"the discovery document's jwks_uri {problem}")
        return jwks_uri

    async def _get_json(self, url: str, what: str) -> object:
        seconds = self._config.http_timeout.total_seconds()
        body = bytearray()
        try:
            async with asyncio.timeout(seconds):
                async with self._http().stream(
                    "GET",
                    url,
                    headers={"Accept": "application/json"},
                    timeout=seconds,
                    follow_redirects=False,
                ) as response:
                    if response.status_code != 200:
                        raise IdentityProviderError(
                            f"the {what} at {url} answered HTTP {response.status_code}"
                        )
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DOCUMENT_BYTES:
                            raise IdentityProviderError(
                                f"the {what} at {url} is over {MAX_DOCUMENT_BYTES} bytes"
                            )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise IdentityProviderError(
                f"the {what} at {url} could not be fetched ({type(exc).__name__})"
            ) from exc
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise IdentityProviderError(f"the {what} at {url} is not JSON") from exc

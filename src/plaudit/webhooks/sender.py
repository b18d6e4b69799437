"""Send one webhook POST to the address that was checked, within one deadline.

Every call checks the URL and resolves the host again (DNS can change between attempts),
then connects to that checked IP address itself, sending the original host name in the
``Host`` header and, for https, as the TLS server name, against which the certificate is
verified. Redirects are never followed: a 3xx comes back as a ``Delivered`` like any other
status, for the caller to treat as a failed delivery.
"""

from __future__ import annotations

import http.cookiejar
import ssl
import time
import urllib.request
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import cast

import anyio
import httpx

from plaudit.webhooks.ssrf import (
    Resolver,
    Target,
    UnsafeUrl,
    check_url,
    resolve_checked,
    system_resolver,
)

USER_AGENT = "Plaudit-Webhooks/1"
EXCERPT_CHARS = 1_000
MAX_BODY_READ = 64 * 1024  # enough for any excerpt; a huge or endless body is never read whole
# Headers the sender owns: the Host names the checked URL, the length is the body's own.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
# Endpoints with open connections at most (the least recently used are closed), and idle
# connections kept per endpoint.
_CLIENTS_MAX = 256
_KEEPALIVE_PER_ENDPOINT = 20
_TIMEOUT_PHASES: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "connecting",
    httpx.WriteTimeout: "sending the request",
    httpx.ReadTimeout: "waiting for the response",
    httpx.PoolTimeout: "waiting for a free connection",
}


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver answered: ``headers`` have lower-case names (for Retry-After)."""

    status: int
    headers: dict[str, str]
    excerpt: str
    latency_ms: float


class SendFailed(Exception):
    """No answer: timeout, refused connection, TLS error, unsafe URL and the like."""

    def __init__(self, reason: str, latency_ms: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.latency_ms = latency_ms


class _NoCookies(http.cookiejar.CookiePolicy):
    """Receivers' cookies are neither kept nor sent to anyone."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: urllib.request.Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: urllib.request.Request) -> bool:
        return False


class WebhookSender:
    """Posts webhook bodies through one shared client; ``aclose`` it when done."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        allow_loopback: bool = False,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._timeout = timeout
        self._allow_loopback = allow_loopback
        self._resolver = resolver
        # One TLS context for every client: building one costs milliseconds.
        self._tls = verify if isinstance(verify, ssl.SSLContext) else _tls_context(verify)
        # httpx pools connections by the URL's host, which here is the checked IP address:
        # a kept-alive TLS connection verified for one name could carry a request for another
        # name at the same address. So each (host name, checked address) has its own client:
        # a connection is reused only for the name it was verified for, at the address that
        # was checked again before the request.
        self._clients: OrderedDict[tuple[str, str, str, int], httpx.AsyncClient] = OrderedDict()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Delivered:
        """POST ``body`` to ``url``; raise ``SendFailed`` with a reason when there is no answer."""
        started = time.perf_counter()
        try:
            with anyio.fail_after(self._timeout):
                target = check_url(url, allow_loopback=self._allow_loopback)
                address = await resolve_checked(
                    target, allow_loopback=self._allow_loopback, resolver=self._resolver
                )
                status, answer_headers, excerpt = await self._send(target, address, headers, body)
        except UnsafeUrl as exc:
            raise SendFailed(f"unsafe URL: {exc.detail}", _since(started)) from exc
        except TimeoutError as exc:
            raise SendFailed(f"timed out after {self._timeout:g}s", _since(started)) from exc
        except httpx.HTTPError as exc:
            raise SendFailed(_reason(exc), _since(started)) from exc
        return Delivered(status, answer_headers, excerpt, _since(started))

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()

    async def _client_for(self, target: Target, address: str) -> httpx.AsyncClient:
        key = (target.scheme, target.host, address, target.port)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = self._clients[key] = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
            verify=self._tls,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            trust_env=False,  # no proxies, certificates or netrc from the environment
            limits=httpx.Limits(max_keepalive_connections=_KEEPALIVE_PER_ENDPOINT),
        )
        while len(self._clients) > _CLIENTS_MAX:
            _, oldest = self._clients.popitem(last=False)
            await oldest.aclose()
        return client

    async def _send(
        self, target: Target, address: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], str]:
        own = {name: value for name, value in headers.items() if name.lower() not in _OWN_HEADERS}
        client = await self._client_for(target, address)
        request = client.build_request(
            "POST",
            httpx.URL(
                scheme=target.scheme,
                host=address,
                port=target.port,
                raw_path=target.path_and_query.encode("ascii"),
            ),
            headers={**own, "Host": target.authority},
            content=body,
            # httpcore passes this to TLS as server_hostname: SNI and certificate checks
            # use the URL's host name although the connection goes to the checked address.
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        response = await client.send(request, stream=True)
        try:
            received = bytearray()
            # aiter_raw is an async generator (typed as an iterator): closed, not left to GC.
            raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())
            async with aclosing(raw) as chunks:
                async for chunk in chunks:
                    received += chunk
                    if len(received) >= MAX_BODY_READ:
                        break
        finally:
            await response.aclose()
        answer_headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status_code, answer_headers, _excerpt(bytes(received), response)


def _excerpt(received: bytes, response: httpx.Response) -> str:
    head = received[: 4 * EXCERPT_CHARS]  # no character takes more than four bytes
    try:
        text = head.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = head.decode("utf-8", errors="replace")
    return text[:EXCERPT_CHARS]


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_problem(exc: BaseException) -> str | None:
    tls = _cause(exc, ssl.SSLError)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return str(tls.verify_message)
    if isinstance(tls, ssl.SSLError):
        return str(tls.reason or tls)
    return None


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out {_TIMEOUT_PHASES.get(type(exc), 'waiting for the receiver')}"
    tls = _tls_problem(exc)
    if tls is not None:
        return f"TLS error: {tls}"
    if isinstance(exc, httpx.ConnectError):
        if _cause(exc, ConnectionRefusedError) is not None:
            return "connection refused"
        return f"connection failed: {_cause(exc, OSError) or exc}"
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {detail}"
    return f"request failed: {detail}"


def _tls_context(verify: bool) -> ssl.SSLContext:
    if not verify:
        return httpx.create_ssl_context(verify=False, trust_env=False)
    return httpx.create_ssl_context(trust_env=False)

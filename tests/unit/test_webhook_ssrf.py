"""Webhook URLs cannot reach Plaudit's own network.

Every hostile URL names the port of a canary listener on loopback, so a guard that let one
through would connect to it; each test ends by checking the canary saw nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from plaudit.webhooks.sender import USER_AGENT, SendFailed, WebhookSender
from plaudit.webhooks.ssrf import (
    Resolver,
    Target,
    UnsafeUrl,
    check_url,
    is_public,
    resolve_checked,
    system_resolver,
)

pytestmark = pytest.mark.anyio

PUBLIC = "93.184.216.34"

# --- a canary that counts connections ---------------------------------------------------------


class Canary:
    """Listens on 127.0.0.1 (and ::1 where it can, on the same port), counting connections."""

    def __init__(self) -> None:
        self.connections = 0
        self._sockets = self._listen()
        self.port: int = self._sockets[0].getsockname()[1]
        self.hosts = ["127.0.0.1", "::1"][: len(self._sockets)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @staticmethod
    def _listen() -> list[socket.socket]:
        for _ in range(20):
            v4 = socket.create_server(("127.0.0.1", 0), backlog=64)
            if not socket.has_ipv6:
                return [v4]
            try:
                v6 = socket.create_server(
                    ("::1", v4.getsockname()[1]), family=socket.AF_INET6, backlog=64
                )
            except OSError:
                v4.close()  # port taken on ::1, or no IPv6 loopback: try another port
                continue
            return [v4, v6]
        return [socket.create_server(("127.0.0.1", 0), backlog=64)]

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self._sockets, [], [], 0.02)
            self._take(ready)

    def _take(self, ready: list[socket.socket]) -> None:
        for listener in ready:
            with contextlib.suppress(BlockingIOError):
                connection, _ = listener.accept()
                self.connections += 1
                connection.close()

    def seen(self) -> int:
        """Stops listening and returns how many connections ever arrived."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            for listener in self._sockets:
                listener.setblocking(False)
            self._take(self._sockets)  # anything still queued counts too
        return self.connections

    def close(self) -> None:
        self.seen()
        for listener in self._sockets:
            listener.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


# --- resolvers ------------------------------------------------------------------------------


def _fail_on_literal(host: str) -> None:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        pytest.fail(f"IP literal {host!r} reached the resolver")
    with contextlib.suppress(OSError):
        socket.inet_aton(host)
        pytest.fail(f"numeric host {host!r} reached the resolver")


class FakeResolver:
    """Names to addresses; an unknown name does not resolve. Records what it was asked."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table if table is not None else NAMES
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        _fail_on_literal(host)
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


class Rebinding:
    """Answers each lookup with the next list of addresses (a DNS rebinding attacker)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        _fail_on_literal(host)
        self.calls.append(host)
        return self.answers.pop(0)


NAMES: dict[str, list[str]] = {
    "public.example": [PUBLIC],
    "internal.example": ["127.0.0.1"],
    "mixed.example": [PUBLIC, "10.0.0.5"],
    "mixed-loopback.example": [PUBLIC, "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "v6-loopback.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "ula.example": ["fd00::1"],
    "link-local.example": ["fe80::1%1"],
    "127.0.0.1.nip.example": ["127.0.0.1"],
    "garbage.example": ["not-an-address"],
    "empty.example": [],
}

# --- hostile URLs ----------------------------------------------------------------------------

# Refused by the syntax check alone (no DNS).
SYNTAX_HOSTILE = [
    # loopback, in every spelling
    "https://127.0.0.1:{port}/",
    "https://127.0.0.2:{port}/",
    "https://127.1:{port}/",
    "https://127.0.1:{port}/",
    "https://2130706433:{port}/",
    "https://0x7f000001:{port}/",
    "https://0X7F000001:{port}/",
    "https://0177.0.0.1:{port}/",
    "https://0x7f.0.0.1:{port}/",
    "https://0x7f.1:{port}/",
    "https://127.000.000.001:{port}/",
    "https://127.0.0.1.:{port}/",
    "https://[::1]:{port}/",
    "https://[0:0:0:0:0:0:0:1]:{port}/",
    "https://[::ffff:127.0.0.1]:{port}/",
    "https://[::ffff:7f00:1]:{port}/",
    "https://[0:0:0:0:0:ffff:127.0.0.1]:{port}/",
    "https://[::127.0.0.1]:{port}/",
    "https://0.0.0.0:{port}/",
    "https://0:{port}/",
    "https://[::]:{port}/",
    "https://localhost:{port}/",
    "https://LOCALHOST.:{port}/",
    "https://localhost.:{port}/",
    "https://hooks.localhost:{port}/",
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    # private ranges
    "https://10.0.0.1:{port}/",
    "https://172.16.0.1:{port}/",
    "https://172.31.255.254:{port}/",
    "https://192.168.1.1:{port}/",
    "https://[fc00::1]:{port}/",
    "https://[fd00:ec2::254]:{port}/",
    # link-local, cloud metadata and other special ranges
    "https://169.254.169.254:{port}/latest/meta-data/",
    "https://[::ffff:169.254.169.254]:{port}/",
    "https://[fe80::1]:{port}/",
    "https://[fe80::1%25lo]:{port}/",
    "https://[fe80::1%lo]:{port}/",
    "https://100.100.100.200:{port}/",
    "https://100.64.0.1:{port}/",
    "https://224.0.0.1:{port}/",
    "https://[ff02::1]:{port}/",
    "https://255.255.255.255:{port}/",
    "https://240.0.0.1:{port}/",
    "https://198.18.0.1:{port}/",
    "https://192.0.2.1:{port}/",
    "https://[2001:db8::1]:{port}/",
    "https://[2002:7f00:1::]:{port}/",
    "https://[64:ff9b::7f00:1]:{port}/",
    "https://[2001::1]:{port}/",
    "https://[fec0::1]:{port}/",
    # userinfo, fragments, backslashes and other parser differentials
    "https://public.example@127.0.0.1:{port}/",
    "https://user:pass@public.example:{port}/",
    "https://@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}#@public.example/",
    r"https://127.0.0.1:{port}\@public.example/",
    r"https://public.example\@127.0.0.1:{port}/",
    r"https:\\127.0.0.1:{port}/",
    "https://%31%32%37.0.0.1:{port}/",
    "https://%6c%6f%63%61%6c%68%6f%73%74:{port}/",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}/",
    "https://public.example:{port}:{port}/",
    "https://127.0.0.1:+{port}/",
    "https:127.0.0.1:{port}/",
    "https:/127.0.0.1:{port}/",
    "https:///127.0.0.1:{port}/",
    "//127.0.0.1:{port}/",
    "https://[127.0.0.1]:{port}/",
    "https://[v1.7f000001]:{port}/",
    # schemes other than https
    "http://public.example:{port}/",
    "file://127.0.0.1:{port}/etc/passwd",
    "gopher://127.0.0.1:{port}/_POST%20/",
    "ftp://127.0.0.1:{port}/",
    "dict://127.0.0.1:{port}/info",
    "ws://127.0.0.1:{port}/",
    # whitespace and control characters
    " https://127.0.0.1:{port}/",
    "\thttps://127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/ ",
    "https://public.example\n@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/\r\nX-Injected: 1",
    "https://127.0.0.1\x00.public.example:{port}/",
    "https://public.example\u200b@127.0.0.1:{port}/",
    # no host
    "https://:{port}/",
    "https://[]:{port}/",
]

# Well-formed, refused once the name is resolved (FakeResolver's NAMES).
RESOLVED_HOSTILE = [
    "https://internal.example:{port}/",
    "https://127.0.0.1.nip.example:{port}/",
    "https://mixed.example:{port}/",
    "https://mixed-loopback.example:{port}/",
    "https://metadata.example:{port}/",
    "https://v6-loopback.example:{port}/",
    "https://mapped.example:{port}/",
    "https://ula.example:{port}/",
    "https://link-local.example:{port}/",
    "https://nowhere.example:{port}/",
    "https://garbage.example:{port}/",
    "https://empty.example:{port}/",
]


@asynccontextmanager
async def sending(
    *,
    seconds: float = 2.0,
    allow_loopback: bool = False,
    resolver: Resolver | None = None,
    verify: ssl.SSLContext | bool = True,
) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(
        timeout=seconds,
        allow_loopback=allow_loopback,
        resolver=resolver or FakeResolver(),
        verify=verify,
    )
    try:
        yield sender
    finally:
        await sender.aclose()


async def refused_send(sender: WebhookSender, url: str) -> SendFailed:
    with pytest.raises(SendFailed) as failed:
        await sender.post(url, {"Content-Type": "application/json"}, b"{}")
    return failed.value


def test_canary_counts_every_connection_it_is_offered(canary: Canary) -> None:
    for host in canary.hosts:
        with socket.create_connection((host, canary.port), timeout=2):
            pass
    assert canary.seen() == len(canary.hosts)


def test_there_are_enough_hostile_urls() -> None:
    assert len(SYNTAX_HOSTILE) + len(RESOLVED_HOSTILE) >= 45
    assert len(set(SYNTAX_HOSTILE + RESOLVED_HOSTILE)) == len(SYNTAX_HOSTILE + RESOLVED_HOSTILE)


@pytest.mark.parametrize("template", SYNTAX_HOSTILE)
async def test_hostile_url_is_refused_by_its_syntax_and_never_connected(
    template: str, canary: Canary
) -> None:
    url = template.format(port=canary.port)
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, allow_loopback=False)
    assert refused.value.slug == "unsafe-url"
    assert refused.value.detail.startswith("webhook URL")
    assert [error.field for error in refused.value.errors] == ["url"]

    resolver = FakeResolver()
    async with sending(resolver=resolver) as sender:
        failed = await refused_send(sender, url)
    assert canary.seen() == 0
    assert failed.reason == f"unsafe URL: {refused.value.detail}"
    assert resolver.calls == []


@pytest.mark.parametrize("template", RESOLVED_HOSTILE)
async def test_name_resolving_to_a_non_public_address_is_refused_and_never_connected(
    template: str, canary: Canary
) -> None:
    url = template.format(port=canary.port)
    target = check_url(url, allow_loopback=False)
    with pytest.raises(UnsafeUrl) as refused:
        await resolve_checked(target, allow_loopback=False, resolver=FakeResolver())
    assert refused.value.detail.startswith(f"webhook URL host {target.host!r} ")

    resolver = FakeResolver()
    async with sending(resolver=resolver) as sender:
        failed = await refused_send(sender, url)
    assert canary.seen() == 0
    assert failed.reason == f"unsafe URL: {refused.value.detail}"
    assert resolver.calls == [target.host]


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("https://2130706433/", "is a numeric address not written as a plain dotted quad"),
        ("https://10.0.0.1/", "'10.0.0.1' is a private address"),
        ("https://169.254.169.254/", "is a link-local address"),
        ("https://[::ffff:127.0.0.1]/", "embedding 127.0.0.1, a loopback address"),
        ("https://user:pw@public.example/", "contains user information"),
        ("http://public.example/", "must use https"),
        ("ftp://public.example/", "scheme 'ftp' is not allowed"),
        ("https://public.example/#x", "fragment"),
        ("https://[fe80::1%25eth0]/", "zone id"),
        ("https://%31%32%37.0.0.1/", "percent-encoded"),
        ("https://intranet/", "not a fully qualified domain name"),
        ("https://public.example:65536/", "port '65536' is not a number from 1 to 65535"),
        ("https://public.example:0/", "port '0'"),
        ("https://public.example/" + "a" * 2048, "longer than 2048 characters"),
    ],
)
def test_refusal_names_the_problem(url: str, detail: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"^webhook URL") as refused:
        check_url(url, allow_loopback=False)
    assert detail in refused.value.detail


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://Hooks.Example.COM:8443/plaudit?tenant=1",
            Target(
                "https",
                "hooks.example.com",
                8443,
                "/plaudit?tenant=1",
                "https://hooks.example.com:8443/plaudit?tenant=1",
            ),
        ),
        (
            "HTTPS://hooks.example.com.:443",
            Target("https", "hooks.example.com", 443, "/", "https://hooks.example.com/"),
        ),
        (
            "https://b\u00fccher.example/\u00e4?q=%20",
            Target(
                "https",
                "xn--bcher-kva.example",
                443,
                "/%C3%A4?q=%20",
                "https://xn--bcher-kva.example/%C3%A4?q=%20",
            ),
        ),
        (
            f"https://{PUBLIC}/hook",
            Target("https", PUBLIC, 443, "/hook", f"https://{PUBLIC}/hook"),
        ),
        (
            "https://[2606:4700:4700::1111]:8443/",
            Target(
                "https", "2606:4700:4700::1111", 8443, "/", "https://[2606:4700:4700::1111]:8443/"
            ),
        ),
        (
            "https://hooks.example.com/a@b/c",
            Target("https", "hooks.example.com", 443, "/a@b/c", "https://hooks.example.com/a@b/c"),
        ),
    ],
)
def test_public_https_url_is_accepted_and_normalised(url: str, expected: Target) -> None:
    assert check_url(url, allow_loopback=False) == expected


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost:8080/", "http://[::1]:8080/"]
)
def test_http_to_loopback_is_allowed_only_in_development(url: str) -> None:
    assert check_url(url, allow_loopback=True).scheme == "http"
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://public.example/",
        "http://10.0.0.1/",
        "https://169.254.169.254/",
        "https://[::ffff:127.0.0.1]/",
        "https://127.1/",
    ],
)
def test_development_setting_still_refuses_everything_but_loopback(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_loopback=True)


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC,
        "8.8.8.8",
        "2606:4700:4700::1111",
        f"::ffff:{PUBLIC}",
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
    ],
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.100.100.200",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",
        "172.16.0.1",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.0.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "100::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "2002:a00:1::",
        "2002:7f00:1::",
        "3fff::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fe80::1%eth0",
        "fec0::1",
        "ff02::1",
    ],
)
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


async def test_resolution_returns_the_first_address_when_all_are_public() -> None:
    resolver = FakeResolver({"two.example": [PUBLIC, "2606:4700:4700::1111"]})
    target = check_url("https://two.example/", allow_loopback=False)
    assert await resolve_checked(target, allow_loopback=False, resolver=resolver) == PUBLIC


async def test_development_setting_allows_loopback_and_public_answers_only() -> None:
    resolver = FakeResolver()
    loopback = check_url("https://mixed-loopback.example/", allow_loopback=True)
    assert await resolve_checked(loopback, allow_loopback=True, resolver=resolver) == PUBLIC
    private = check_url("https://mixed.example/", allow_loopback=True)
    with pytest.raises(UnsafeUrl, match=r"resolves to 10\.0\.0\.5, a private address"):
        await resolve_checked(private, allow_loopback=True, resolver=resolver)


async def test_ip_literal_is_checked_without_dns() -> None:
    resolver = FakeResolver()
    target = check_url(f"https://{PUBLIC}:8443/", allow_loopback=False)
    assert await resolve_checked(target, allow_loopback=False, resolver=resolver) == PUBLIC
    assert resolver.calls == []


async def test_system_resolver_answers_ip_strings() -> None:
    assert "127.0.0.1" in await system_resolver("127.0.0.1", 443)


# --- the sender against real local receivers --------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Received:
    request_line: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.removesuffix("\r\n\r\n").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(request_line, headers, body)


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


def answering(
    status: int,
    headers: dict[str, str] | None = None,
    body: bytes = b"ok",
    received: list[Received] | None = None,
) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await read_request(reader)
            if received is not None:
                received.append(request)
            fields = {"Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
            head = f"HTTP/1.1 {status} Whatever\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in fields.items()
            )
            writer.write(head.encode("latin-1") + b"\r\n" + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            await hang_up(writer)

    return handle


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_body_and_headers_reach_the_receiver_with_the_url_host() -> None:
    received: list[Received] = []
    handler = answering(200, {"Retry-After": "30", "X-Thing": "a"}, b"thanks", received)
    async with serving(handler) as port, sending(allow_loopback=True) as sender:
        delivered = await sender.post(
            f"http://127.0.0.1:{port}/hooks/plaudit?tenant=7",
            {"Content-Type": "application/json", "Host": "evil.example", "X-Signature": "s"},
            b'{"event": "badge.awarded"}',
        )
    assert delivered.status == 200
    assert delivered.headers["retry-after"] == "30"
    assert delivered.headers["x-thing"] == "a"
    assert delivered.excerpt == "thanks"
    assert delivered.latency_ms > 0
    [request] = received
    assert request.request_line == "POST /hooks/plaudit?tenant=7 HTTP/1.1"
    assert request.headers["host"] == f"127.0.0.1:{port}"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-signature"] == "s"
    assert request.body == b'{"event": "badge.awarded"}'


async def test_a_name_is_connected_at_the_address_it_was_checked_as() -> None:
    received: list[Received] = []
    resolver = FakeResolver({"localhost": ["127.0.0.1"]})
    async with (
        serving(answering(204, body=b"", received=received)) as port,
        sending(allow_loopback=True, resolver=resolver) as sender,
    ):
        delivered = await sender.post(f"http://localhost:{port}/", {}, b"{}")
    assert delivered.status == 204
    assert resolver.calls == ["localhost"]
    assert received[0].headers["host"] == f"localhost:{port}"


async def test_cookies_from_a_receiver_are_never_sent_back() -> None:
    received: list[Received] = []
    handler = answering(200, {"Set-Cookie": "session=abc; Path=/"}, received=received)
    async with serving(handler) as port, sending(allow_loopback=True) as sender:
        for _ in range(2):
            await sender.post(f"http://127.0.0.1:{port}/", {}, b"{}")
    assert [request.headers.get("cookie") for request in received] == [None, None]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_returned_not_followed(status: int, canary: Canary) -> None:
    location = f"http://127.0.0.1:{canary.port}/admin"
    async with (
        serving(answering(status, {"Location": location})) as port,
        sending(allow_loopback=True) as sender,
    ):
        delivered = await sender.post(f"http://127.0.0.1:{port}/", {}, b"{}")
    assert delivered.status == status
    assert delivered.headers["location"] == location
    assert canary.seen() == 0


async def test_dns_rebinding_to_loopback_is_refused_on_the_next_attempt(canary: Canary) -> None:
    resolver = Rebinding([PUBLIC], ["127.0.0.1"])
    url = f"https://rebind.example:{canary.port}/"
    async with sending(seconds=1.0, resolver=resolver) as sender:
        first = await refused_send(sender, url)  # no route to the public address here
        second = await refused_send(sender, url)
    assert not first.reason.startswith("unsafe URL")
    assert second.reason == (
        "unsafe URL: webhook URL host 'rebind.example' resolves to 127.0.0.1, a loopback address"
    )
    assert resolver.calls == ["rebind.example", "rebind.example"]
    assert canary.seen() == 0


async def test_connection_refused_is_a_reason() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    async with sending(allow_loopback=True) as sender:
        failed = await refused_send(sender, f"http://127.0.0.1:{port}/")
    assert failed.reason == "connection refused"


async def test_receiver_that_never_answers_fails_at_the_timeout() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the sender gives up and disconnects
        await hang_up(writer)

    async with serving(hang) as port, sending(seconds=0.5, allow_loopback=True) as sender:
        started = time.perf_counter()
        failed = await refused_send(sender, f"http://127.0.0.1:{port}/")
    assert failed.reason.startswith("timed out")
    assert 0.4 < time.perf_counter() - started < 2.0
    assert failed.latency_ms >= 400


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    for index in range(len(data)):
        writer.write(data[index : index + 1])
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("part", ["headers", "body"])
async def test_receiver_that_trickles_bytes_is_cut_off_at_the_timeout(part: str) -> None:
    headers = b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\nX-Padding: " + b"p" * 300 + b"\r\n\r\n"

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            if part == "headers":
                await trickle(writer, headers + b"x" * 400)
            else:
                writer.write(headers)
                await trickle(writer, b"x" * 400)
        except ConnectionError:
            pass
        finally:
            await hang_up(writer)

    async with serving(slow) as port, sending(seconds=0.5, allow_loopback=True) as sender:
        started = time.perf_counter()
        failed = await refused_send(sender, f"http://127.0.0.1:{port}/")
    assert failed.reason == "timed out after 0.5s"
    assert time.perf_counter() - started < 2.0  # the whole trickle would take 35 s


@pytest.mark.parametrize("character", ["x", "\u00e9", "\U0001f3c6"])
async def test_excerpt_is_the_first_thousand_characters(character: str) -> None:
    body = (character * 5000).encode()
    handler = answering(500, {"Content-Type": "text/plain; charset=utf-8"}, body)
    async with serving(handler) as port, sending(allow_loopback=True) as sender:
        delivered = await sender.post(f"http://127.0.0.1:{port}/", {}, b"{}")
    assert delivered.status == 500
    assert delivered.excerpt == character * 1000


async def test_endless_body_is_not_read_to_its_end() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            while True:  # until the sender hangs up
                writer.write(b"y" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            await hang_up(writer)

    async with serving(endless) as port, sending(seconds=5.0, allow_loopback=True) as sender:
        delivered = await sender.post(f"http://127.0.0.1:{port}/", {}, b"{}")
    assert delivered.status == 200
    assert delivered.excerpt == "y" * 1000
    assert delivered.latency_ms < 5000


# --- TLS: SNI and certificate checks use the URL's host name ---------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a certificate for receiver.example, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed; it makes the test certificates")
    folder = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:receiver.example\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    ca = [*ec, "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
    ca += ["-subj", "/CN=Plaudit test CA", "-addext", "basicConstraints=critical,CA:TRUE"]
    ca += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    request = [*ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=receiver.example"]
    sign = ["-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1"]
    sign += ["-days", "2", "-out", "server.pem", "-extfile", "server.ext"]
    commands = [["req", *ca], ["req", *request], ["x509", *sign]]
    for command in commands:
        subprocess.run([openssl, *command], cwd=folder, check=True, capture_output=True)
    return Certificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@asynccontextmanager
async def tls_receiver(
    certificates: Certificates, received: list[Received], server_names: list[str | None]
) -> AsyncIterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)

    def record(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        server_names.append(name)

    context.sni_callback = record
    async with serving(answering(200, received=received), tls=context) as port:
        yield port


def trusting(certificates: Certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates.ca))


async def test_https_goes_to_the_checked_address_with_the_url_host_for_sni_and_certificate(
    certificates: Certificates,
) -> None:
    received: list[Received] = []
    server_names: list[str | None] = []
    resolver = FakeResolver({"receiver.example": ["127.0.0.1"]})
    async with (
        tls_receiver(certificates, received, server_names) as port,
        sending(allow_loopback=True, resolver=resolver, verify=trusting(certificates)) as sender,
    ):
        delivered = await sender.post(f"https://receiver.example:{port}/hook", {}, b"{}")
    assert delivered.status == 200
    assert server_names == ["receiver.example"]
    assert received[0].headers["host"] == f"receiver.example:{port}"


async def test_https_certificate_for_another_name_is_refused(certificates: Certificates) -> None:
    received: list[Received] = []
    resolver = FakeResolver({"other.example": ["127.0.0.1"]})
    async with (
        tls_receiver(certificates, received, []) as port,
        sending(allow_loopback=True, resolver=resolver, verify=trusting(certificates)) as sender,
    ):
        failed = await refused_send(sender, f"https://other.example:{port}/")
    assert failed.reason.startswith("TLS error: ")
    assert "other.example" in failed.reason
    assert received == []


async def test_https_certificate_from_an_unknown_authority_is_refused(
    certificates: Certificates,
) -> None:
    received: list[Received] = []
    resolver = FakeResolver({"receiver.example": ["127.0.0.1"]})
    async with (
        tls_receiver(certificates, received, []) as port,
        sending(allow_loopback=True, resolver=resolver) as sender,
    ):
        failed = await refused_send(sender, f"https://receiver.example:{port}/")
    assert failed.reason.startswith("TLS error: ")
    assert received == []

"""Refuse webhook URLs that would reach Plaudit's own network (SSRF).

Two checks. ``check_url`` is syntax only (no DNS): it runs when a subscription is created or
edited, and refuses anything a URL parser, a browser and ``getaddrinfo`` might read in
different ways. ``resolve_checked`` runs before every delivery: it resolves the host and
refuses it when any address it resolves to is not public. The sender then connects to the
address that was checked, never to the name again, so a DNS answer that changes between
the check and the connection (rebinding) reaches nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import string
import unicodedata
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx

from plaudit.errors import FieldError, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeUrl(InvalidInput):
    """A webhook URL that is malformed, ambiguous, or points at a non-public address."""

    slug = "unsafe-url"
    title = "Unsafe webhook URL"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, [FieldError("url", detail)])


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL: ``host`` is lower-case and IDNA-encoded (IPv6 without brackets)."""

    scheme: str
    host: str
    port: int
    path_and_query: str
    url: str

    @property
    def authority(self) -> str:
        """The ``Host`` header value: bracketed for IPv6, port only when not the default."""
        return _authority(self.scheme, self.host, self.port)


def _authority(scheme: str, host: str, port: int) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return bracketed if port == DEFAULT_PORTS[scheme] else f"{bracketed}:{port}"


class Resolver(Protocol):
    """Turns a host name into the IP addresses (as strings) it resolves to."""

    async def __call__(self, host: str, port: int) -> list[str]: ...


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo`` in a worker thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- addresses -----------------------------------------------------------------------------

_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT; holds 100.100.100.200, a cloud metadata service
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local; holds 169.254.169.254, the cloud metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
    )
)
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible addresses
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments: Teredo 2001::/32, benchmarking, ORCHID
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local; holds fd00:ec2::254, the AWS metadata service
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and is routed to (mapped, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(ip: IPAddress) -> bool:
    """True only for a globally routable unicast address; IPv6 carrying IPv4 is judged by it."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return False
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return is_public(embedded)
        if any(ip in net for net in _NOT_PUBLIC_V6):
            return False
    elif any(ip in net for net in _NOT_PUBLIC_V4):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _describe(ip: IPAddress) -> str:
    """Names the kind of a non-public address for an error message."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return f"an IPv6 address embedding {embedded}, {_describe(embedded)}"
        if ip in ipaddress.IPv6Network("::/96") and not (ip.is_loopback or ip.is_unspecified):
            return "an IPv4-compatible IPv6 address"
    kinds = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (carrier-grade NAT)", ip in ipaddress.IPv4Network("100.64.0.0/10")),
        ("broadcast", ip == ipaddress.IPv4Address("255.255.255.255")),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    kind = next((name for name, applies in kinds if applies), "non-public")
    return f"a {kind} address"


def _is_loopback(ip: IPAddress) -> bool:
    return ip.is_loopback and (not isinstance(ip, ipaddress.IPv6Address) or ip.scope_id is None)


# --- syntax --------------------------------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PORT = re.compile(r"[0-9]{1,5}")
_CANONICAL_V4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
)
# What WHATWG URL parsers and inet_aton() read as an IPv4 number: decimal, octal or 0x-hex.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_NAME_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
_PRINTABLE_ASCII = frozenset(string.printable) - frozenset(string.whitespace)
# Printable ASCII is kept as written ('%' included: escapes stay); anything else is escaped.
_PATH_SAFE = string.punctuation + string.ascii_letters + string.digits


def _unsafe_character(url: str) -> str | None:
    for char in url:
        if char in _PRINTABLE_ASCII:
            continue
        if char.isascii() or unicodedata.category(char)[0] in "CZ":
            return char
    return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _split_authority(authority: str) -> tuple[str, str | None, bool]:
    """(host, port text or None, bracketed) of an authority with no userinfo."""
    if authority.startswith("["):
        host, bracket, rest = authority[1:].partition("]")
        if not bracket:
            raise UnsafeUrl("webhook URL has an unclosed '[' in its host")
        if rest and not rest.startswith(":"):
            raise UnsafeUrl(f"webhook URL has unexpected text {rest!r} after its IPv6 address")
        return host, (rest[1:] if rest else None), True
    if authority.count(":") > 1:
        raise UnsafeUrl(
            f"webhook URL authority {authority!r} is ambiguous (IPv6 addresses need brackets)"
        )
    host, colon, port = authority.partition(":")
    return host, (port if colon else None), False


def _parse_port(text: str | None, scheme: str) -> int:
    if text is None:
        return DEFAULT_PORTS[scheme]
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise UnsafeUrl(f"webhook URL port {text!r} is not a number from 1 to 65535")
    return int(text)


def _ipv6_host(text: str) -> ipaddress.IPv6Address:
    if "%" in text:
        raise UnsafeUrl(f"webhook URL host [{text}] has an IPv6 zone id, which is not allowed")
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise UnsafeUrl(f"webhook URL host [{text}] is not a valid IPv6 address") from None


def _name_host(text: str) -> str | IPAddress:
    """A canonical IPv4 address, or a lower-case IDNA-encoded name without a trailing dot."""
    if not text:
        raise UnsafeUrl("webhook URL has no host")
    if "%" in text:
        raise UnsafeUrl(f"webhook URL host {text!r} is percent-encoded, which is not allowed")
    if text.isascii():
        encoded = text.lower()
    else:
        try:
            encoded = httpx.URL(f"https://{text}/").raw_host.decode("ascii").lower()
        except (httpx.InvalidURL, UnicodeError):
            raise UnsafeUrl(f"webhook URL host {text!r} is not a valid domain name") from None
    name = encoded.removesuffix(".")
    labels = name.split(".")
    if _CANONICAL_V4.fullmatch(name):
        return ipaddress.IPv4Address(name)
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise UnsafeUrl(
            f"webhook URL host {text!r} is a numeric address not written as a plain "
            "dotted quad (such as 203.0.113.7); write the address in that form"
        )
    if len(name) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in labels):
        raise UnsafeUrl(f"webhook URL host {text!r} is not a valid domain name")
    if len(labels) == 1 and not _is_localhost(name):
        raise UnsafeUrl(
            f"webhook URL host {text!r} is not a fully qualified domain name; "
            "single-label names resolve inside the local network"
        )
    return name


def _split_url(url: str) -> tuple[str, str, str]:
    """(scheme, authority, path and query) of an absolute URL, refusing ambiguous text."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    bad = _unsafe_character(url)
    if bad is not None:
        raise UnsafeUrl(f"webhook URL contains the character {bad!r}, which is not allowed")
    if "\\" in url:
        raise UnsafeUrl("webhook URL contains a backslash, which parsers read differently")
    if "#" in url:
        raise UnsafeUrl("webhook URL has a '#' fragment, which is never sent and not allowed")
    scheme_text, colon, rest = url.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme_text):
        raise UnsafeUrl("webhook URL is not absolute (it needs a scheme such as https://)")
    scheme = scheme_text.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeUrl(f"webhook URL scheme {scheme_text!r} is not allowed; use https")
    if not rest.startswith("//"):
        raise UnsafeUrl("webhook URL must have the form https://host/path")
    authority = re.split(r"[/?]", rest[2:], maxsplit=1)[0]
    if "@" in authority:
        raise UnsafeUrl("webhook URL contains user information (user:password@), not allowed")
    return scheme, authority, rest[2 + len(authority) :]


def check_url(url: str, *, allow_loopback: bool) -> Target:
    """Check a webhook URL's syntax (no DNS); raise ``UnsafeUrl`` naming the problem.

    Only https is allowed, except http to a loopback host when ``allow_loopback`` (the
    development setting). Anything that URL parsers disagree on is refused rather than
    interpreted: backslashes, whitespace and control characters, userinfo, fragments,
    percent-encoded hosts, IPv6 zone ids and IPv4 addresses in legacy numeric forms.
    """
    scheme, authority, path_and_query = _split_url(url)
    host_text, port_text, bracketed = _split_authority(authority)
    if not host_text:
        raise UnsafeUrl("webhook URL has no host")
    host = _ipv6_host(host_text) if bracketed else _name_host(host_text)
    port = _parse_port(port_text, scheme)

    if isinstance(host, str):
        loopback = _is_localhost(host)
        if loopback and not allow_loopback:
            raise UnsafeUrl(f"webhook URL host {host_text!r} is a loopback name")
    else:
        loopback = _is_loopback(host)
        if not is_public(host) and not (loopback and allow_loopback):
            means = "is" if str(host) == host_text else f"means {host},"
            raise UnsafeUrl(f"webhook URL host {host_text!r} {means} {_describe(host)}")
    if scheme == "http" and not (loopback and allow_loopback):
        raise UnsafeUrl("webhook URL must use https")

    path_and_query = quote(path_and_query, safe=_PATH_SAFE)
    if not path_and_query.startswith("/"):
        path_and_query = "/" + path_and_query
    normalised = f"{scheme}://{_authority(scheme, str(host), port)}{path_and_query}"
    return Target(scheme, str(host), port, path_and_query, normalised)


# --- resolution ----------------------------------------------------------------------------


async def _addresses(target: Target, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(target.host)]
    except ValueError:
        pass  # a name: ask the resolver
    try:
        answers = await resolver(target.host, target.port)
    except OSError as exc:
        raise UnsafeUrl(f"webhook URL host {target.host!r} does not resolve ({exc})") from exc
    if not answers:
        raise UnsafeUrl(f"webhook URL host {target.host!r} does not resolve")
    try:
        return [ipaddress.ip_address(answer) for answer in answers]
    except ValueError as exc:
        raise UnsafeUrl(f"webhook URL host {target.host!r} resolves to {exc}") from None


async def resolve_checked(target: Target, *, allow_loopback: bool, resolver: Resolver) -> str:
    """The address to connect to, refusing when any address the host resolves to is not
    public (loopback passes only with ``allow_loopback``). IP literals skip DNS."""
    addresses = await _addresses(target, resolver)
    for address in addresses:
        if is_public(address) or (allow_loopback and _is_loopback(address)):
            continue
        raise UnsafeUrl(
            f"webhook URL host {target.host!r} resolves to {address}, {_describe(address)}"
        )
    return str(addresses[0])

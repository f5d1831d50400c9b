"""URL checking: parse, normalise the host, resolve it once, refuse anything not public.

Every host notation a resolver or a URL parser might read as an IP address is turned into that
address here (``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``, ``0``), so the address that
is checked is the address that is connected to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import idna

from .errors import FetchError
from .policy import FetchPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match names the reason.
_IPV4_BLOCKS: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "in 0.0.0.0/8 ('this network')"),
    (_V4("10.0.0.0/8"), "private (RFC 1918)"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local (cloud metadata lives here)"),
    (_V4("172.16.0.0/12"), "private (RFC 1918)"),
    (_V4("192.0.0.0/24"), "reserved for IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "the 6to4 relay anycast range"),
    (_V4("192.168.0.0/16"), "private (RFC 1918)"),
    (_V4("198.18.0.0/15"), "reserved for benchmarking"),
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

_IPV6_BLOCKS: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b::/96"), "a NAT64 address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("100::/64"), "the discard-only range"),
    (_V6("2001::/32"), "a Teredo tunnel address"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("fc00::/7"), "unique-local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated, private)"),
    (_V6("ff00::/8"), "multicast"),
)
_IPV4_COMPATIBLE = _V6("::/96")
_SIXTOFOUR = _V6("2002::/16")


@dataclass(frozen=True)
class ResolvedAddress:
    """One address a checked host resolved to; the fetcher connects only to these."""

    host: str  # the host as it will be sent: an ASCII (punycode) name or an IP literal
    port: int
    ip: IPAddress


@dataclass(frozen=True)
class Target:
    """A URL after parsing and host normalisation."""

    url: str  # what is requested: no fragment, numeric hosts written canonically
    scheme: str
    host: str
    port: int
    ip: IPAddress | None  # set when the host is an IP literal (in any notation)
    # The parse the checks above were made on; the request is built from it, so it is never parsed again.
    parsed: httpx.URL = field(repr=False, compare=False)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why this address may not be fetched from, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv4Address):
        for network, reason in _IPV4_BLOCKS:
            if ip in network:
                return reason
    else:
        if ip.scope_id:
            return "scoped (has a zone id)"
        if ip.ipv4_mapped is not None:
            # Refused whatever it maps to: no public site needs this form, and some stacks
            # connect to the embedded IPv4 address.
            inner = blocked_reason(ip.ipv4_mapped)
            suffix = f", and {ip.ipv4_mapped} is {inner}" if inner else ""
            return f"an IPv4-mapped IPv6 address{suffix}"
        for network6, reason in _IPV6_BLOCKS:
            if ip in network6:
                return reason
        if ip in _IPV4_COMPATIBLE:
            return "an IPv4-compatible IPv6 address (deprecated form)"
        if ip in _SIXTOFOUR and ip.sixtofour is not None:
            inner = blocked_reason(ip.sixtofour)
            if inner:
                return f"a 6to4 address embedding {ip.sixtofour}, which is {inner}"
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "not globally routable"
    return None


def _ends_in_number(host: str) -> bool:
    # The WHATWG URL standard's test: a host whose last label is a number is an IPv4 address
    # (or invalid), never a domain name.
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isascii() and last.isdigit():
        return True
    return last[:2].lower() == "0x" and all(ch in string.hexdigits for ch in last[2:])


def parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address:
    """Parses IPv4 the way inet_aton() does: 1-4 parts, each decimal, 0-prefixed octal or 0x hex."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"{host!r} has {len(parts)} numeric parts")
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            digits, base = part[2:] or "0", 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        if not digits or not digits.isascii() or not digits.isalnum():
            raise ValueError(f"{part!r} is not a number")
        numbers.append(int(digits, base))
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is out of range for IPv4")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def unsupported_scheme(scheme: str) -> str:
    """The one wording of a refused scheme, wherever a URL is taken (fetcher, CLI, API, admin, feeds)."""
    return f"unsupported scheme {scheme.lower()!r} (only http and https)"


def url_scheme(location: str) -> str | None:
    """The scheme a location starts with (``file``, ``ftp``, ``https``), or None for a path."""
    match = _URL_SCHEME.match(location.strip())
    return match[1].lower() if match else None


def url_refusal(url: str) -> str | None:
    """Why the fetcher would refuse this URL before any DNS or connection, or None when it is acceptable.

    The validator for URLs given by people (admin form, API, run trigger): the same check and the same
    words as the fetcher's (``unsupported scheme 'file' (only http and https)``).
    """
    try:
        parse_target(url)
    except FetchError as error:
        return error.detail
    return None


def _check_host_name(hostname: str, url: str) -> None:
    """Refuses a host name IDNA rejects (empty labels, bad punycode, disallowed code points)."""
    name = hostname[:-1] if hostname.endswith(".") else hostname
    labels = name.split(".")
    if any(not label for label in labels):
        raise FetchError("bad_url", url, f"host {hostname!r} is not a valid domain name (empty label)")
    for label in labels:
        # Plain ASCII labels may hold "_" (real DNS names do); anything else must pass IDNA (UTS 46).
        if label.isascii() and not label.lower().startswith("xn--"):
            if len(label) > 63:
                raise FetchError("bad_url", url, f"host {hostname!r} has a label longer than 63 characters")
            continue
        try:
            idna.encode(label, uts46=True)
        except idna.IDNAError as error:
            raise FetchError("bad_url", url, f"host {hostname!r} is not a valid domain name (IDNA: {error})") from None


def parse_target(url: str) -> Target:
    """Parses and normalises a URL, refusing what the fetcher will not request."""
    if not isinstance(url, str):
        raise FetchError("bad_url", repr(url), "not a string")
    url = url.strip()
    if _CONTROL_CHARACTERS.search(url):
        raise FetchError("bad_url", url, "control characters in the URL")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as error:
        raise FetchError("bad_url", url, str(error)) from error
    scheme = parts.scheme.lower()
    if scheme and scheme not in DEFAULT_PORTS:
        raise FetchError("unsupported_scheme", url, unsupported_scheme(scheme))
    if not scheme or not parts.netloc:
        raise FetchError("bad_url", url, "not an absolute http(s) URL")
    if "@" in parts.netloc:
        raise FetchError("bad_url", url, "credentials (user@) in URLs are refused")
    if any(ch in parts.netloc for ch in "\\ %"):
        raise FetchError("bad_url", url, "the host contains a backslash, space or %")
    hostname = parts.hostname
    if not hostname:
        raise FetchError("bad_url", url, "no host")

    ip: IPAddress | None = None
    try:
        if parts.netloc.startswith("["):
            ip = ipaddress.IPv6Address(hostname)
            literal = f"[{ip.compressed}]"
        elif _ends_in_number(hostname):
            ip = parse_legacy_ipv4(hostname)
            literal = str(ip)
        else:
            _check_host_name(hostname, url)
            literal = hostname
    except ValueError as error:
        raise FetchError("bad_url", url, f"bad IP address: {error}") from error

    netloc = literal if explicit_port is None else f"{literal}:{explicit_port}"
    normalised = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    try:
        parsed = httpx.URL(normalised)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as error:
        raise FetchError("bad_url", url, str(error)) from error
    if ip is not None and (not host or ipaddress.ip_address(host) != ip):
        # Defence against the two parsers disagreeing about the host.
        raise FetchError("bad_url", url, f"host parsed as {host!r}, expected {ip}")
    if ip is None and (not host or _ends_in_number(host)):
        raise FetchError("bad_url", url, f"host {host!r} is not a valid name")
    port = explicit_port if explicit_port is not None else DEFAULT_PORTS[scheme]
    return Target(url=str(parsed), scheme=scheme, host=host, port=port, ip=ip, parsed=parsed)


def resolve(target: Target, policy: FetchPolicy, *, original_url: str | None = None) -> list[ResolvedAddress]:
    """Resolves the target's host once and refuses it if any address is not allowed."""
    url = original_url or target.url
    if target.ip is not None:
        ips: list[IPAddress] = [target.ip]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            transient = isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN
            raise FetchError("dns_error", url, f"cannot resolve {target.host}: {error}", transient=transient) from error
        ips = []
        for _family, _type, _proto, _canonname, sockaddr in infos:
            try:
                ip = ipaddress.ip_address(sockaddr[0])
            except ValueError as error:
                raise FetchError(
                    "dns_error", url, f"{target.host} resolved to {sockaddr[0]!r}, not an IP address"
                ) from error
            if ip not in ips:
                ips.append(ip)
        if not ips:
            raise FetchError("dns_error", url, f"{target.host} has no addresses")

    for ip in ips:
        reason = blocked_reason(ip)
        if reason is not None and not policy.allows(ip):
            subject = str(ip) if target.ip is not None else f"{target.host} resolves to {ip}, which"
            raise FetchError("blocked_address", url, f"{subject} is {reason}")
    return [ResolvedAddress(host=target.host, port=target.port, ip=ip) for ip in ips]


def check_url(url: str, policy: FetchPolicy) -> list[ResolvedAddress]:
    """Parses the URL, checks its scheme, resolves its host and checks every address.

    Raises FetchError (``bad_url``, ``unsupported_scheme``, ``dns_error`` or ``blocked_address``);
    makes no connection. Use it to validate URLs given by users before storing them.
    """
    return resolve(parse_target(url), policy, original_url=url)

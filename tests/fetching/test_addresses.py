import ipaddress
import pickle
import socket

import pytest

from catalog.fetching import FetchError, FetchPolicy, ResolvedAddress, check_url
from catalog.fetching.addresses import parse_legacy_ipv4, parse_target

STRICT = FetchPolicy()
UNSPECIFIED = "0.0.0.0"  # noqa: S104 - an address under test, nothing binds to it


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.1/", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://127.0.0.1./", "127.0.0.1"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
        ("http://[::1]/", "::1"),
        ("http://0/", UNSPECIFIED),
        ("http://0.0.0.0:8000/", UNSPECIFIED),
        ("http://[::]/", "::"),
        ("http://0.1.2.3/", "0.1.2.3"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1/", "10.0.0.1"),
        ("http://172.16.5.4/", "172.16.5.4"),
        ("http://192.168.1.1/", "192.168.1.1"),
        ("http://100.64.0.1/", "100.64.0.1"),
        ("http://224.0.0.1/", "224.0.0.1"),
        ("http://255.255.255.255/", "255.255.255.255"),
        ("http://240.0.0.1/", "240.0.0.1"),
        ("http://192.0.2.10/", "192.0.2.10"),
        ("https://[fc00::1]/", "fc00::1"),
        ("https://[fd12:3456::1]/", "fd12:3456::1"),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://[ff02::1]/", "ff02::1"),
        ("http://[::ffff:8.8.8.8]/", "::ffff:8.8.8.8"),  # the mapped form is refused whatever it maps to
        ("http://[::127.0.0.1]/", "::127.0.0.1"),  # IPv4-compatible
        ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1"),  # NAT64
        ("http://[2002:7f00:1::]/", "2002:7f00:1::"),  # 6to4 around 127.0.0.1
    ],
)
def test_numeric_hosts_that_are_not_public_are_refused_without_dns(fake_dns, url, address):
    with pytest.raises(FetchError) as caught:
        check_url(url, STRICT)

    assert caught.value.reason == "blocked_address"
    assert caught.value.url == url
    assert not caught.value.transient
    assert str(ipaddress.ip_address(address)) in str(caught.value)
    assert fake_dns.lookups == []


def test_error_message_is_one_clear_line():
    with pytest.raises(FetchError) as caught:
        check_url("http://127.1/", STRICT)

    assert str(caught.value) == "refused http://127.1/: 127.0.0.1 is loopback"


def test_mapped_ipv6_names_the_mapped_address():
    with pytest.raises(FetchError, match=r"IPv4-mapped.*127\.0\.0\.1 is loopback"):
        check_url("http://[::ffff:127.0.0.1]/", STRICT)


@pytest.mark.parametrize("ips", [("10.1.2.3",), ("93.184.216.34", "10.0.0.1"), ("2606:4700::1", "fe80::1")])
def test_a_name_is_refused_when_any_address_is_not_public(fake_dns, ips):
    fake_dns.add("intranet.test", *ips)

    with pytest.raises(FetchError) as caught:
        check_url("https://intranet.test/x", STRICT)

    assert caught.value.reason == "blocked_address"
    assert "intranet.test resolves to" in str(caught.value)


def test_names_resolving_to_public_addresses_are_allowed(fake_dns):
    fake_dns.add("example.com", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")

    addresses = check_url("https://Example.COM/path?q=1#frag", STRICT)

    assert addresses == [
        ResolvedAddress("example.com", 443, ipaddress.ip_address("93.184.216.34")),
        ResolvedAddress("example.com", 443, ipaddress.ip_address("2606:2800:220:1:248:1893:25c8:1946")),
    ]
    assert fake_dns.lookups == ["example.com"]


@pytest.mark.parametrize(
    "url",
    ["http://93.184.216.34/", "http://8.8.8.8:8080/x", "https://[2606:4700::1111]/", "http://0x08080808/"],
)
def test_public_literals_are_allowed(fake_dns, url):
    assert len(check_url(url, STRICT)) == 1
    assert fake_dns.lookups == []


def test_numeric_notations_are_normalised_for_the_request():
    target = parse_target("http://0x7f000001:8080/a?b=1#c")

    assert target.url == "http://127.0.0.1:8080/a?b=1"
    assert (target.host, target.port) == ("127.0.0.1", 8080)


def test_allow_networks_lets_loopback_through():
    policy = FetchPolicy(allow_networks=("127.0.0.0/8",))

    assert [a.ip for a in check_url("http://127.0.0.1:8000/", policy)] == [ipaddress.ip_address("127.0.0.1")]
    assert [a.ip for a in check_url("http://127.1/", policy)] == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(FetchError, match=r"10\.0\.0\.1 is private"):
        check_url("http://10.0.0.1/", policy)
    with pytest.raises(FetchError, match="::1 is loopback"):
        check_url("http://[::1]/", policy)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@93.184.216.34/",
        "http://example.com@127.0.0.1/",
        "http://93.184.216.34\\@127.0.0.1/",
        "http://",
        "/relative/path",
        "http://1.2.3.256/",
        "http://1.2.3.4.5/",
        "http://example.0x10/",
        "http://08.0.0.1/",
        "http://93.184.216.34:99999/",
        "http://[fe80::1%25eth0]/",
        "http://[not-ipv6]/",
        "http://93.184.216.34/\r\nX-Injected: 1",
        "http://exa mple.com/",
    ],
)
def test_malformed_urls_are_bad_url(fake_dns, url):
    with pytest.raises(FetchError) as caught:
        check_url(url, STRICT)

    assert caught.value.reason == "bad_url"
    assert fake_dns.lookups == []


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)"])
def test_other_schemes_are_refused(url):
    with pytest.raises(FetchError) as caught:
        check_url(url, STRICT)

    assert caught.value.reason == "unsupported_scheme"


def test_unknown_names_are_dns_errors(fake_dns):
    with pytest.raises(FetchError) as caught:
        check_url("http://no-such-host.test/", STRICT)

    assert caught.value.reason == "dns_error"
    assert not caught.value.transient


def test_temporary_dns_failure_is_transient(monkeypatch):
    def failing(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", failing)

    with pytest.raises(FetchError) as caught:
        check_url("http://flaky.test/", STRICT)

    assert caught.value.reason == "dns_error"
    assert caught.value.transient


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7F.0.0.0x1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0", UNSPECIFIED),
        ("0x", UNSPECIFIED),
        ("1.2.3.4.", "1.2.3.4"),
        ("192.168.65535", "192.168.255.255"),
    ],
)
def test_legacy_ipv4_parsing(text, expected):
    assert parse_legacy_ipv4(text) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("text", ["256.0.0.1", "1.2.3.4.5", "08", "0x1g", "1..2", "4294967296", "1.2.65536"])
def test_legacy_ipv4_parsing_refuses_garbage(text):
    with pytest.raises(ValueError):
        parse_legacy_ipv4(text)


def test_policy_from_env_reads_allow_networks():
    policy = FetchPolicy.from_env({"FETCH_ALLOW_NETWORKS": " 127.0.0.0/8, ::1/128 ,"}, deadline=5.0)

    assert policy.allow_networks == ("127.0.0.0/8", "::1/128")
    assert policy.deadline == 5.0
    assert FetchPolicy.from_env({}).allow_networks == ()


def test_policy_from_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("FETCH_ALLOW_NETWORKS", "10.0.0.0/8")

    assert FetchPolicy.from_env().allow_networks == ("10.0.0.0/8",)


def test_policy_refuses_bad_networks():
    with pytest.raises(ValueError, match="allow_networks"):
        FetchPolicy(allow_networks=("not-a-network",))
    with pytest.raises(TypeError):
        FetchPolicy(allow_networks="127.0.0.0/8")  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "transient"), [(404, False), (410, False), (429, True), (500, True), (503, True)])
def test_http_errors_are_transient_for_429_and_5xx(status, transient):
    error = FetchError("http_error", "http://x/", f"HTTP {status}", status=status)

    assert error.transient is transient


def test_fetch_errors_survive_pickling():
    error = FetchError("http_error", "http://x/", "HTTP 503", status=503)

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (copy.reason, copy.url, copy.status, copy.transient, str(copy)) == (
        "http_error",
        "http://x/",
        503,
        True,
        str(error),
    )

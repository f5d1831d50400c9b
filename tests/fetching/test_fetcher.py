import json
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpcore
import pytest

from catalog.fetching import FetchError, FetchPolicy, SafeFetcher
from catalog.fetching.transport import PinnedBackend

from .conftest import ETAG, HTML, JPEG, LAST_MODIFIED

LOCAL = FetchPolicy(
    allow_networks=("127.0.0.1/32",),
    user_agent="imagetagger-test/1",
    connect_timeout=1.0,
    read_timeout=0.3,
    deadline=5.0,
    max_redirects=3,
)


@pytest.fixture
def fetcher():
    with SafeFetcher(LOCAL) as fetcher:
        yield fetcher


def _reason(call, *args, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_fetches_an_image_with_its_validators(fetcher, server):
    result = fetcher.fetch(server.url("/image"), expect_image=True)

    assert result.status == 200
    assert not result.not_modified
    assert result.url == server.url("/image")
    assert result.content == JPEG
    assert result.sniffed_type == "image/jpeg"
    assert result.etag == ETAG
    assert result.last_modified == LAST_MODIFIED
    assert result.content_length == len(JPEG)
    assert result.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "validators",
    [{"etag": ETAG}, {"last_modified": LAST_MODIFIED}, {"etag": ETAG, "last_modified": LAST_MODIFIED}],
)
def test_conditional_get_returns_not_modified(fetcher, server, validators):
    result = fetcher.fetch(server.url("/image"), expect_image=True, **validators)

    assert result.status == 304
    assert result.not_modified
    assert result.content == b""
    assert result.sniffed_type is None


def test_stale_validators_get_the_full_body(fetcher, server):
    result = fetcher.fetch(server.url("/image"), etag='"v0"', last_modified="Mon, 01 Jan 2001 00:00:00 GMT")

    assert result.status == 200
    assert result.content == JPEG


def test_sends_the_user_agent_and_the_real_host(fetcher, server):
    sent = json.loads(fetcher.fetch(server.url("/headers")).content)

    assert sent["User-Agent"] == "imagetagger-test/1"
    assert sent["Host"] == f"127.0.0.1:{server.port}"
    assert sent["Accept-Encoding"] == "identity"


def test_cookies_are_not_carried_between_fetches(fetcher, server):
    fetcher.fetch(server.url("/set-cookie"))

    sent = json.loads(fetcher.fetch(server.url("/headers")).content)

    assert "Cookie" not in sent


def test_declared_length_over_the_cap_is_refused_before_reading(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/big"), max_bytes=1000)

    assert error.reason == "too_large"
    assert "Content-Length 100000" in str(error)


def test_huge_declared_length_is_refused_without_waiting_for_the_body(fetcher, server):
    # The server sends the headers and then nothing: reading would end in a timeout instead.
    error = _reason(fetcher.fetch, server.url("/huge-declared"))

    assert error.reason == "too_large"
    assert not error.transient


def test_undeclared_body_is_cut_at_the_cap(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/big-chunked"), max_bytes=10_000)

    assert error.reason == "too_large"
    assert "10000-byte cap" in str(error)


def test_policy_cap_applies_without_max_bytes(server):
    with SafeFetcher(FetchPolicy(allow_networks=("127.0.0.1/32",), max_bytes=50_000)) as small:
        assert _reason(small.fetch, server.url("/big-chunked")).reason == "too_large"
        assert small.fetch(server.url("/image")).content == JPEG


def test_body_shorter_than_its_content_length_is_a_transient_protocol_error(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/truncated"))

    assert error.reason == "protocol_error"
    assert error.transient


def test_slow_response_times_out(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/slow"))

    assert error.reason == "timeout"
    assert error.transient


def test_slow_drip_body_hits_the_deadline():
    # Each chunk comes well within the read timeout; the whole body takes 2 s.
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), read_timeout=0.3, deadline=0.6)
    with SafeFetcher(policy) as fetcher, _server() as server:
        started = time.monotonic()
        error = _reason(fetcher.fetch, server.url("/drip"))
        elapsed = time.monotonic() - started

    assert error.reason == "deadline"
    assert not error.transient
    assert elapsed < 1.5


def test_deadline_cuts_a_read_short_even_within_the_read_timeout():
    # The first chunk comes at 0.7 s, the next after 3 s more, both within the 5 s read timeout.
    # The wait for the second must end at the 1 s deadline, not at the read timeout.
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), read_timeout=5.0, deadline=1.0)
    with SafeFetcher(policy) as fetcher, _server() as server:
        started = time.monotonic()
        error = _reason(fetcher.fetch, server.url("/pause-body"))
        elapsed = time.monotonic() - started

    assert error.reason == "deadline"
    assert elapsed < 1.4


def test_deadline_also_applies_while_iterating_a_stream():
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), read_timeout=0.3, deadline=0.6)
    with (
        SafeFetcher(policy) as fetcher,
        _server() as server,
        fetcher.stream(server.url("/drip")) as (result, chunks),
    ):
        assert result.status == 200
        error = _reason(_drain, chunks)

    assert error.reason == "deadline"


def test_deadline_counts_across_redirects():
    # Every hop answers within the read timeout; together they blow the deadline.
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), read_timeout=0.3, deadline=0.5, max_redirects=20)
    with SafeFetcher(policy) as fetcher, _server() as server:
        error = _reason(fetcher.fetch, server.url("/slow-redirect/0"))

    assert error.reason == "deadline"
    assert 2 <= len(server.paths) <= 5


def test_stream_yields_the_body_in_chunks(fetcher, server):
    with fetcher.stream(server.url("/big")) as (result, chunks):
        body = b"".join(chunks)

    assert result.content == b""
    assert result.sniffed_type == "text/plain"
    assert result.content_length == 100_000
    assert body == b"x" * 100_000


def test_stream_raises_too_large_once_the_cap_is_passed(fetcher, server):
    received: list[bytes] = []
    with fetcher.stream(server.url("/big-chunked"), max_bytes=100_000) as (_result, chunks):
        error = _reason(_drain, chunks, into=received)

    assert error.reason == "too_large"
    assert 0 < sum(map(len, received)) <= 100_000


def test_follows_redirects_within_the_limit(fetcher, server):
    result = fetcher.fetch(server.url("/redirect/3"))

    assert result.content == b"arrived"
    assert result.url == server.url("/redirect/0")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_every_redirect_status(fetcher, server, status):
    result = fetcher.fetch(server.url(f"/redirect-to?status={status}&location=/whoami"))

    assert result.content == b"main"


@pytest.mark.parametrize("path", ["/redirect/4", "/loop"])
def test_too_many_redirects(fetcher, server, path):
    error = _reason(fetcher.fetch, server.url(path))

    assert error.reason == "too_many_redirects"
    assert len(server.paths) == 4


def test_redirect_without_location_is_an_http_error(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/redirect-no-location"))

    assert (error.reason, error.status) == ("http_error", 302)


def test_redirect_to_cloud_metadata_is_refused(fetcher, server):
    location = quote("http://169.254.169.254/latest/meta-data/", safe="")

    error = _reason(fetcher.fetch, server.url(f"/redirect-to?location={location}"))

    assert error.reason == "blocked_address"
    assert error.url == "http://169.254.169.254/latest/meta-data/"
    assert "169.254.169.254 is link-local" in str(error)
    assert "redirected from" in str(error)


def test_redirect_to_a_server_outside_the_allowed_networks_never_connects(fetcher, server, other_server):
    location = quote(other_server.url("/image"), safe="")

    error = _reason(fetcher.fetch, server.url(f"/redirect-to?location={location}"))

    assert error.reason == "blocked_address"
    assert "127.0.0.2 is loopback" in str(error)
    assert other_server.settle() == 0


def test_refused_url_fails_fast_without_connecting(other_server):
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), connect_timeout=5.0, deadline=30.0)
    with SafeFetcher(policy) as fetcher:
        started = time.monotonic()
        error = _reason(fetcher.fetch, other_server.url("/image"))
        elapsed = time.monotonic() - started

    assert error.reason == "blocked_address"
    assert elapsed < 1.0
    assert other_server.settle() == 0


def test_redirect_to_hex_loopback_is_checked_as_loopback(server, other_server):
    location = quote(f"http://0x7f000001:{server.port}/image", safe="")
    policy = FetchPolicy(allow_networks=("127.0.0.2/32",), read_timeout=1.0)

    with SafeFetcher(policy) as fetcher:
        error = _reason(fetcher.fetch, other_server.url(f"/redirect-to?location={location}"))

    assert error.reason == "blocked_address"
    assert "127.0.0.1 is loopback" in str(error)
    assert server.settle() == 0


def test_redirect_to_hex_loopback_is_normalised_when_allowed(fetcher, server):
    location = quote(f"http://0x7f000001:{server.port}/whoami", safe="")

    result = fetcher.fetch(server.url(f"/redirect-to?location={location}"))

    assert result.url == server.url("/whoami")
    assert result.content == b"main"


@pytest.mark.parametrize(("status", "transient"), [(404, False), (410, False), (429, True), (503, True)])
def test_http_errors_carry_the_status(fetcher, server, status, transient):
    error = _reason(fetcher.fetch, server.url(f"/status/{status}"))

    assert error.reason == "http_error"
    assert error.status == status
    assert error.transient is transient
    assert f"HTTP {status}" in str(error)


def test_html_served_as_jpeg_is_not_an_image(fetcher, server):
    error = _reason(fetcher.fetch, server.url("/fake-image"), expect_image=True)

    assert error.reason == "not_image"
    assert "text/html" in str(error)
    assert fetcher.fetch(server.url("/fake-image")).content == HTML


def test_closed_port_is_a_transient_connect_error(fetcher):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    error = _reason(fetcher.fetch, f"http://127.0.0.1:{port}/")

    assert error.reason == "connect_error"
    assert error.transient


def test_connects_to_the_checked_address_without_resolving_again(fake_dns, twin_servers):
    first, second = twin_servers
    # A rebinding resolver: the check sees 127.0.0.1, any later lookup would get 127.0.0.2.
    fake_dns.add_changing("pinned.test", "127.0.0.1", "127.0.0.2")
    policy = FetchPolicy(allow_networks=("127.0.0.0/8",), read_timeout=1.0)

    with SafeFetcher(policy) as fetcher:
        result = fetcher.fetch(f"http://pinned.test:{first.port}/whoami")

    assert result.content == b"first"
    assert fake_dns.lookups == ["pinned.test"]
    assert first.server.headers_seen[-1]["host"] == f"pinned.test:{first.port}"
    assert second.settle() == 0


def test_rebinding_to_a_blocked_address_is_refused_at_the_next_fetch(fake_dns, server):
    fake_dns.add_changing("rebind.test", "127.0.0.1", "10.0.0.7")

    with SafeFetcher(LOCAL) as fetcher:
        assert fetcher.fetch(f"http://rebind.test:{server.port}/whoami").content == b"main"
        error = _reason(fetcher.fetch, f"http://rebind.test:{server.port}/whoami")

    assert error.reason == "blocked_address"
    assert "rebind.test resolves to 10.0.0.7, which is private" in str(error)


def test_backend_refuses_hosts_no_fetch_has_checked(server):
    with pytest.raises(httpcore.ConnectError, match="not checked"):
        PinnedBackend().connect_tcp("127.0.0.1", server.port)

    assert server.settle() == 0


def test_tls_is_verified_against_the_real_host_name(fake_dns, tls_server, certificate):
    cert, _key = certificate
    fake_dns.add("pinned.test", "127.0.0.1")
    fake_dns.add("other.test", "127.0.0.1")
    trust = ssl.create_default_context(cafile=str(cert))

    with SafeFetcher(LOCAL, ssl_context=trust) as fetcher:
        result = fetcher.fetch(f"https://pinned.test:{tls_server.port}/image", expect_image=True)
        wrong_name = _reason(fetcher.fetch, f"https://other.test:{tls_server.port}/image")
        bare_ip = _reason(fetcher.fetch, f"https://127.0.0.1:{tls_server.port}/image")

    assert result.content == JPEG
    assert tls_server.server.headers_seen[0]["host"] == f"pinned.test:{tls_server.port}"
    assert wrong_name.reason == "tls_error"
    assert not wrong_name.transient
    assert bare_ip.reason == "tls_error"


def test_untrusted_certificate_is_a_tls_error(fake_dns, tls_server):
    fake_dns.add("pinned.test", "127.0.0.1")

    with SafeFetcher(LOCAL) as fetcher:
        error = _reason(fetcher.fetch, f"https://pinned.test:{tls_server.port}/image")

    assert error.reason == "tls_error"


def test_one_fetcher_serves_many_threads(fetcher, server, other_server):
    urls = [server.url("/image"), server.url("/whoami"), other_server.url("/whoami")] * 30

    def attempt(url: str) -> bytes | str:
        try:
            return fetcher.fetch(url).content
        except FetchError as error:
            return error.reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, urls))

    assert results == [JPEG, b"main", "blocked_address"] * 30
    assert other_server.settle() == 0


def _drain(chunks, into: list[bytes] | None = None) -> None:
    for chunk in chunks:
        if into is not None:
            into.append(chunk)


def _server():
    from .conftest import running

    return running("127.0.0.1", name="main")

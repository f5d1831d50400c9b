"""What SafeFetcher puts on the wire and how it reads odd answers, against a raw socket server that records every
request byte for byte and answers each path with fixed bytes."""

import gzip
import random
import socket
import threading

import pytest

from catalog.fetching import FetchError, FetchPolicy, SafeFetcher

LOCAL = FetchPolicy(allow_networks=("127.0.0.0/8",), user_agent="imagetagger-test/1", read_timeout=2)
SQUEEZED = gzip.compress(b"x" * 5000)
NOISE = random.Random(7).randbytes(300_000)
NOISE_SQUEEZED = gzip.compress(NOISE)
ANSWERS = {
    "/repeated": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Tag: a\r\nx-tag: b\r\nSet-Cookie: s=1\r\n\r\nok",
    "/latin-1": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Name: caf\xe9\r\n\r\nok",
    "/gzip-anyway": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(SQUEEZED), SQUEEZED),
    "/gzip-noise": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    % (len(NOISE_SQUEEZED), NOISE_SQUEEZED),
    "/bad-location": b"HTTP/1.1 302 Found\r\nLocation: http://[::1/x\r\nContent-Length: 0\r\n\r\n",
}


@pytest.fixture
def recording_server():
    """Yields (base URL, requests seen); each request is its head and body, as bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        pending = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in pending:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    pending += chunk
                head, pending = pending.split(b"\r\n\r\n", 1)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                while len(pending) < length:
                    pending += conn.recv(65536)
                body, pending = pending[:length], pending[length:]
                seen.append(head + b"\r\n\r\n" + body)
                conn.sendall(ANSWERS[head.split(b" ")[1].decode().split("?")[0]])

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_a_get_sends_exactly_the_default_headers_and_its_validators(recording_server):
    base, seen = recording_server
    with SafeFetcher(LOCAL) as fetcher:
        fetcher.fetch(f"{base}/repeated")  # its answer sets a cookie, which must not come back
        fetcher.fetch(f"{base}/repeated?q=a b#fragment", etag='"v1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")

    host = base.removeprefix("http://").encode()
    assert seen[1] == (
        b"GET /repeated?q=a%20b HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\nConnection: keep-alive\r\n"
        b"User-Agent: imagetagger-test/1\r\nAccept-Encoding: identity\r\n"
        b'If-None-Match: "v1"\r\nIf-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n'
    )


def test_a_post_lets_its_headers_replace_the_defaults(recording_server):
    base, seen = recording_server
    with SafeFetcher(LOCAL) as fetcher:
        fetcher.post(f"{base}/repeated", content=b"{}", headers={"user-agent": "hook/2", "Content-Type": "a/b"})

    host = base.removeprefix("http://").encode()
    assert seen == [
        b"POST /repeated HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\nConnection: keep-alive\r\n"
        b"Accept-Encoding: identity\r\nuser-agent: hook/2\r\nContent-Type: a/b\r\nContent-Length: 2\r\n\r\n{}"
    ]


def test_repeated_headers_are_joined_under_lower_case_names(recording_server):
    base, _ = recording_server
    with SafeFetcher(LOCAL) as fetcher:
        result = fetcher.fetch(f"{base}/repeated")

    assert result.headers == {"content-length": "2", "x-tag": "a, b", "set-cookie": "s=1"}


def test_header_values_that_are_not_ascii_or_utf8_are_read_as_latin_1(recording_server):
    base, _ = recording_server
    with SafeFetcher(LOCAL) as fetcher:
        result = fetcher.fetch(f"{base}/latin-1")

    assert result.headers["x-name"] == "café"


def test_a_body_compressed_despite_identity_is_decoded_and_capped_decoded(recording_server):
    base, _ = recording_server
    with SafeFetcher(LOCAL) as fetcher:
        result = fetcher.fetch(f"{base}/gzip-anyway")
        with pytest.raises(FetchError) as capped:
            fetcher.fetch(f"{base}/gzip-anyway", max_bytes=len(SQUEEZED) + 100)

    assert result.content == b"x" * 5000
    assert capped.value.reason == "too_large"


def test_a_compressed_body_is_decompressed_64_kib_at_a_time(recording_server):
    # Each piece is decompressed whole before the cap is checked: the piece size bounds a bomb's step past the cap.
    base, _ = recording_server
    with SafeFetcher(LOCAL) as fetcher, fetcher.stream(f"{base}/gzip-noise") as (_result, chunks):
        received = list(chunks)

    assert b"".join(received) == NOISE
    assert max(map(len, received)) <= 64 * 1024


def test_a_location_that_is_no_url_is_a_protocol_error_and_the_get_is_sent_once(recording_server):
    base, seen = recording_server
    with SafeFetcher(LOCAL) as fetcher, pytest.raises(FetchError) as failed:
        fetcher.fetch(f"{base}/bad-location")

    assert failed.value.reason == "protocol_error"
    assert "Invalid URL in location header" in str(failed.value)
    assert len(seen) == 1

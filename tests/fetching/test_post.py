"""SafeFetcher.post (webhooks): the same guard as every fetch, against a real local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from catalog.fetching import FetchError, FetchPolicy, SafeFetcher

LOCAL = FetchPolicy(allow_networks=("127.0.0.0/8",), deadline=10)


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    """POST /ok answers 200 with a body, /redirect a 307 to /ok, /down a 503; every request is kept."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status, extra, answer = {
                "/ok": (200, {}, b"thanks"),
                "/redirect": (307, {"Location": "/ok"}, b""),
                "/down": (503, {}, b"later"),
            }[self.path]
            self.send_response(status)
            for name, value in {**extra, "Content-Length": str(len(answer))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_post_sends_its_body_and_headers_and_returns_the_answer(server):
    base, seen = server
    with SafeFetcher(LOCAL) as fetcher:
        result = fetcher.post(
            f"{base}/ok", content=b'{"a":1}', headers={"Content-Type": "application/json", "X-Sig": "s"}
        )

    assert (result.status, result.content) == (200, b"thanks")
    [(method, path, headers, body)] = seen
    assert (method, path, body) == ("POST", "/ok", b'{"a":1}')
    assert (headers["content-type"], headers["x-sig"], headers["content-length"]) == ("application/json", "s", "7")


def test_a_post_is_never_redirected(server):
    base, seen = server
    with SafeFetcher(LOCAL) as fetcher, pytest.raises(FetchError) as refused:
        fetcher.post(f"{base}/redirect", content=b"{}")
    assert (refused.value.reason, refused.value.status, refused.value.transient) == ("http_error", 307, False)
    assert [path for _, path, _, _ in seen] == ["/redirect"]


def test_a_server_error_is_transient(server):
    base, _ = server
    with SafeFetcher(LOCAL) as fetcher, pytest.raises(FetchError) as failed:
        fetcher.post(f"{base}/down", content=b"{}")
    assert (failed.value.reason, failed.value.status, failed.value.transient) == ("http_error", 503, True)


def test_a_post_to_a_private_address_is_refused_before_connecting(server):
    base, seen = server
    with SafeFetcher(FetchPolicy()) as fetcher, pytest.raises(FetchError) as refused:  # no private network allowed
        fetcher.post(f"{base}/ok", content=b"{}")
    assert refused.value.reason == "blocked_address"
    assert not refused.value.transient
    assert seen == []

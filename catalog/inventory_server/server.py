"""A real local HTTP server that serves an advertiser's inventory: an image sitemap, listing pages, JPEGs.

Used by the integration tests (a real Celery worker fetches from it), the benchmark command and the demo.
Everything is served from bytes in memory by daemon threads; nothing is logged.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from catalog.inventory_server.images import (
    big_jpeg_body,
    decompression_bomb_png,
    small_jpeg,
    truncated_jpeg,
)

VALIDATORS = ("etag", "last-modified", "both", "none")
SLOW_SECONDS = 5.0
PRIVATE_REDIRECT_TARGET = "http://169.254.169.254/latest/meta-data/"
_FIRST_GENERATION_DATE = datetime(2026, 1, 1, tzinfo=UTC)
_IMAGE_PATH = re.compile(r"/img/(\d+)/(\d+)\.jpg")
_LISTING_PATH = re.compile(r"/cars/(\d+)")
_CHUNK = 64 * 1024
_HTML_PRETENDING_TO_BE_JPEG = (
    b"<!doctype html><html><head><title>Page not found</title></head>"
    b"<body><h1>Sorry, this picture is no longer available</h1></body></html>"
)

Handler = Callable[[BaseHTTPRequestHandler], None]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    inventory: InventoryServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-body (timeouts, size limits) are expected here; stay quiet."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the benchmark measures the pipeline, not TCP handshakes
    timeout = 30
    # As a CDN does. With Nagle on, the tail of a body written after its headers waited for the client's delayed
    # ACK: a 128 KB image took 13 ms instead of 2 on loopback, and a benchmark measured the stall.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.inventory._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.inventory._track(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.inventory._dispatch(self, head=False)

    def do_HEAD(self) -> None:
        self.server.inventory._dispatch(self, head=True)


def _send(
    request: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    head: bool = False,
) -> None:
    request.send_response(status)
    if content_type is not None:
        request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    if status != HTTPStatus.NOT_MODIFIED:
        request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if head or not body:
        return
    try:
        view = memoryview(body)
        for start in range(0, len(body), _CHUNK):
            request.wfile.write(view[start : start + _CHUNK])
    except OSError:  # the client gave up (read timeout, size limit): nothing left to do for it
        request.close_connection = True


@dataclass
class InventoryServer:
    """Serves listings with their images as an image sitemap, on a real port of this machine.

    Start it with .start() or as a context manager; .base_url is like "http://127.0.0.1:PORT". Listing k
    holds images k * images_per_listing up to the next listing's first; image i is /img/<generation>/<i>.jpg.
    """

    images: list[bytes]
    images_per_listing: int = 10
    validators: str = "both"
    generation: int = 0
    host: str = "127.0.0.1"
    delay: float = 0.0
    bind_port: int = 0  # 0: any free port
    requests: int = field(default=0, init=False)
    image_downloads: int = field(default=0, init=False)
    not_modified: int = field(default=0, init=False)
    request_paths: list[str] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _httpd: _HTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _connections: set[socket.socket] = field(default_factory=set, init=False, repr=False)
    _routes: dict[str, Handler] = field(default_factory=dict, init=False, repr=False)
    _flaky_failed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.validators not in VALIDATORS:
            raise ValueError(f"validators must be one of {VALIDATORS}, not {self.validators!r}")
        if self.images_per_listing < 1:
            raise ValueError("images_per_listing must be at least 1")

    # Lifecycle

    def start(self) -> InventoryServer:
        if self._httpd is not None:
            raise RuntimeError("the inventory server is already running")
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.bind_port), _RequestHandler)
        httpd.inventory = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="inventory-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops listening and drops kept-alive connections, so a stopped server really looks down."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay or /special/slow.jpg
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> InventoryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Addresses and state

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the inventory server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sitemap_url(self) -> str:
        return f"{self.base_url}/sitemap.xml"

    @property
    def listing_count(self) -> int:
        return -(-len(self.images) // self.images_per_listing)

    def listing_url(self, k: int) -> str:
        return f"{self.base_url}/cars/{k}"

    def image_url(self, i: int) -> str:
        return f"{self.base_url}/img/{self.generation}/{i}.jpg"

    def listing_images(self, k: int) -> range:
        """Indexes of the images listing k shows."""
        start = k * self.images_per_listing
        return range(start, min(start + self.images_per_listing, len(self.images)))

    def etag(self, i: int, generation: int | None = None) -> str:
        """Hashed per request (~0.2 ms for a photo) so it can never go stale if images is edited."""
        digest = hashlib.sha1(self.images[i], usedforsecurity=False).hexdigest()[:16]
        return f'"g{self.generation if generation is None else generation}-{digest}"'

    @property
    def last_modified(self) -> datetime:
        return _FIRST_GENERATION_DATE + timedelta(days=self.generation)

    def rename(self) -> None:
        """Every image gets a new URL and a new ETag, with the same bytes: a CDN that renamed every file."""
        with self._lock:
            self.generation += 1

    def reset_counters(self) -> None:
        """Zeroes the counters, forgets the request log and re-arms /special/flaky.jpg."""
        with self._lock:
            self.requests = self.image_downloads = self.not_modified = 0
            self.request_paths.clear()
            self._flaky_failed = False

    def add_route(self, path: str, handler: Handler) -> None:
        """Serves path (query ignored) with handler(request); it sends the whole response itself."""
        self._routes[path] = handler

    # Documents

    def sitemap_xml(self) -> bytes:
        lastmod = self.last_modified.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
            ' xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
        ]
        for k in range(self.listing_count):
            parts.append(f"<url><loc>{escape(self.listing_url(k))}</loc><lastmod>{lastmod}</lastmod>")
            parts.extend(
                f"<image:image><image:loc>{escape(self.image_url(i))}</image:loc></image:image>"
                for i in self.listing_images(k)
            )
            parts.append("</url>\n")
        parts.append("</urlset>\n")
        return "".join(parts).encode()

    def sitemap_index_xml(self) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"<sitemap><loc>{escape(self.sitemap_url)}</loc></sitemap>\n"
            "</sitemapindex>\n"
        ).encode()

    def listing_html(self, k: int) -> bytes:
        tags = "\n".join(
            f'<img src="{escape(self.image_url(i))}" alt="Car {k}, photo {n + 1}">'
            for n, i in enumerate(self.listing_images(k))
        )
        return (
            f'<!doctype html>\n<html><head><meta charset="utf-8"><title>Car {k}</title></head>\n'
            f"<body><h1>Car {k}</h1>\n{tags}\n</body></html>\n"
        ).encode()

    # Serving

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _dispatch(self, request: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = urlsplit(request.path).path
        with self._lock:
            self.requests += 1
            self.request_paths.append(path)
        custom = self._routes.get(path)
        if custom is not None:
            custom(request)
            request.close_connection = True  # the handler may not have sent Content-Length
            return
        if path.startswith("/img/"):
            self._serve_image(request, path, head=head)
        elif path.startswith("/special/"):
            self._serve_special(request, path, head=head)
        else:
            self._serve_document(request, path, head=head)

    def _serve_document(self, request: BaseHTTPRequestHandler, path: str, *, head: bool) -> None:
        listing = _LISTING_PATH.fullmatch(path)
        if path == "/sitemap.xml":
            _send(request, 200, self.sitemap_xml(), content_type="application/xml", head=head)
        elif path == "/sitemap.xml.gz":
            body = gzip.compress(self.sitemap_xml(), mtime=0)
            _send(request, 200, body, content_type="application/gzip", head=head)
        elif path == "/sitemap_index.xml":
            _send(request, 200, self.sitemap_index_xml(), content_type="application/xml", head=head)
        elif path == "/robots.txt":
            body = f"User-agent: *\nAllow: /\nSitemap: {self.sitemap_url}\n".encode()
            _send(request, 200, body, content_type="text/plain; charset=utf-8", head=head)
        elif listing is not None and int(listing.group(1)) < self.listing_count:
            body = self.listing_html(int(listing.group(1)))
            _send(request, 200, body, content_type="text/html; charset=utf-8", head=head)
        else:
            _send(request, 404, b"not found\n", content_type="text/plain", head=head)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _serve_image(self, request: BaseHTTPRequestHandler, path: str, *, head: bool) -> None:
        self._sleep(self.delay)
        match = _IMAGE_PATH.fullmatch(path)
        generation = self.generation
        if match is None or int(match.group(1)) != generation or int(match.group(2)) >= len(self.images):
            _send(request, 404, b"not found\n", content_type="text/plain", head=head)
            return
        index = int(match.group(2))
        headers = {"Cache-Control": "public, max-age=86400"}
        etag = self.etag(index, generation)
        last_modified = _FIRST_GENERATION_DATE + timedelta(days=generation)
        if self.validators in ("etag", "both"):
            headers["ETag"] = etag
        if self.validators in ("last-modified", "both"):
            headers["Last-Modified"] = format_datetime(last_modified, usegmt=True)
        if self._is_fresh(request, etag, last_modified):
            with self._lock:
                self.not_modified += 1
            _send(request, 304, headers=headers, head=head)
            return
        if not head:
            with self._lock:
                self.image_downloads += 1
        _send(request, 200, self.images[index], content_type="image/jpeg", headers=headers, head=head)

    def _is_fresh(self, request: BaseHTTPRequestHandler, etag: str, last_modified: datetime) -> bool:
        """RFC 9110 conditional GET: If-None-Match wins over If-Modified-Since when both apply."""
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None and self.validators in ("etag", "both"):
            return etag in (tag.strip() for tag in if_none_match.split(","))
        if_modified_since = request.headers.get("If-Modified-Since")
        if if_modified_since is not None and self.validators in ("last-modified", "both"):
            try:
                since = parsedate_to_datetime(if_modified_since)
            except (TypeError, ValueError):
                return False
            return since.tzinfo is not None and since >= last_modified
        return False

    def _serve_special(self, request: BaseHTTPRequestHandler, path: str, *, head: bool) -> None:
        image = self.images[0] if self.images else small_jpeg()
        if path == "/special/slow.jpg":
            self._sleep(SLOW_SECONDS)
            _send(request, 200, image, content_type="image/jpeg", head=head)
        elif path == "/special/redirect.jpg":
            _send(request, 302, headers={"Location": f"/img/{self.generation}/0.jpg"}, head=head)
        elif path == "/special/redirect-private.jpg":
            _send(request, 302, headers={"Location": PRIVATE_REDIRECT_TARGET}, head=head)
        elif path == "/special/html.jpg":
            _send(request, 200, _HTML_PRETENDING_TO_BE_JPEG, content_type="image/jpeg", head=head)
        elif path == "/special/bomb.png":
            _send(request, 200, decompression_bomb_png(), content_type="image/png", head=head)
        elif path == "/special/truncated.jpg":
            _send(request, 200, truncated_jpeg(), content_type="image/jpeg", head=head)
        elif path == "/special/big.jpg":
            _send(request, 200, big_jpeg_body(), content_type="image/jpeg", head=head)
        elif path == "/special/flaky.jpg":
            with self._lock:
                failed_before, self._flaky_failed = self._flaky_failed, True
            if failed_before:
                _send(request, 200, image, content_type="image/jpeg", head=head)
            else:
                headers = {"Retry-After": "0"}
                _send(request, 503, b"try again\n", content_type="text/plain", headers=headers, head=head)
        else:  # /special/404.jpg and anything unknown
            _send(request, 404, b"not found\n", content_type="text/plain", head=head)

"""Real local HTTP(S) servers and a fake resolver for the fetcher tests."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


JPEG = _jpeg_bytes()
HTML = b"<!DOCTYPE html><html><head><title>Not an image</title></head><body>hi</body></html>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    name = ""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.connections = 0
        self.paths: list[str] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, object]:
        # Called once per accepted TCP connection: the record of who connected.
        request = super().get_request()
        with self.lock:
            self.connections += 1
        return request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunked(self, chunks: Iterator[bytes], content_type: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        with self.server.lock:
            self.server.paths.append(path)
            self.server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        try:
            self._route(path, query)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        segments = path.strip("/").split("/")
        if path == "/image":
            validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
            modified_since = self.headers.get("If-Modified-Since")
            if self.headers.get("If-None-Match") == ETAG or modified_since == LAST_MODIFIED:
                self._send(304, headers={"ETag": ETAG, "Content-Length": "0"})
                return
            self._send(200, JPEG, {"Content-Type": "image/jpeg", **validators})
        elif path == "/fake-image":
            self._send(200, HTML, {"Content-Type": "image/jpeg"})
        elif path == "/page":
            self._send(200, HTML, {"Content-Type": "text/html"})
        elif path == "/whoami":
            self._send(200, self.server.name.encode(), {"Content-Type": "text/plain"})
        elif path == "/headers":
            body = json.dumps(dict(self.headers.items())).encode()
            self._send(200, body, {"Content-Type": "application/json"})
        elif path == "/set-cookie":
            self._send(200, b"ok", {"Set-Cookie": "session=secret; Path=/"})
        elif path == "/big":
            self._send(200, b"x" * 100_000, {"Content-Type": "text/plain"})
        elif path == "/big-chunked":
            self._chunked(b"y" * 16_384 for _ in range(64))
        elif path == "/huge-declared":
            # Claims a body far over any cap, then sends nothing for a long time.
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.flush()
            time.sleep(2)
            self.close_connection = True
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only ten b")
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/pause-body":
            self._chunked(_paused_chunks(0.7, 3.0))
        elif path == "/drip":
            self._chunked(_drip(40, 0.05))
        elif segments[0] == "redirect" and len(segments) == 2:
            remaining = int(segments[1])
            if remaining == 0:
                self._send(200, b"arrived")
            else:
                self._send(302, headers={"Location": f"/redirect/{remaining - 1}"})
        elif segments[0] == "slow-redirect" and len(segments) == 2:
            time.sleep(0.15)
            self._send(302, headers={"Location": f"/slow-redirect/{int(segments[1]) + 1}"})
        elif path == "/loop":
            self._send(301, headers={"Location": "/loop"})
        elif path == "/redirect-to":
            status = int(query.get("status", ["302"])[0])
            self._send(status, headers={"Location": query["location"][0]})
        elif path == "/redirect-no-location":
            self._send(302)
        elif segments[0] == "status" and len(segments) == 2:
            self._send(int(segments[1]), b"status page")
        else:
            self._send(404, b"not found")


def _paused_chunks(*pauses: float) -> Iterator[bytes]:
    for pause in pauses:
        time.sleep(pause)
        yield b"a chunk"


def _drip(count: int, pause: float) -> Iterator[bytes]:
    for _ in range(count):
        time.sleep(pause)
        yield b"drip " * 2


@dataclass
class LocalServer:
    server: _Server
    host: str
    port: int
    scheme: str = "http"
    thread: threading.Thread = field(repr=False, default=None)  # type: ignore[assignment]

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        with self.server.lock:
            return self.server.connections

    @property
    def paths(self) -> list[str]:
        with self.server.lock:
            return list(self.server.paths)

    def settle(self) -> int:
        """Connection count once every connection made so far has been accepted.

        Connections are accepted in order, so once a fresh probe connection has been accepted,
        any earlier one has been counted too. The probe itself is not counted in the result.
        """
        with socket.create_connection((self.host, self.port), timeout=2) as probe:
            probe.sendall(b"GET /whoami HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            probe.recv(1024)
            return self.connections - 1


def _start(host: str, port: int = 0, name: str = "", ssl_context: ssl.SSLContext | None = None) -> LocalServer:
    server = _Server((host, port))
    server.name = name or host
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scheme = "https" if ssl_context is not None else "http"
    return LocalServer(server=server, host=host, port=server.server_address[1], scheme=scheme, thread=thread)


def _stop(local: LocalServer) -> None:
    local.server.shutdown()
    local.server.server_close()


@contextlib.contextmanager
def running(host: str, port: int = 0, **kwargs: object) -> Iterator[LocalServer]:
    local = _start(host, port, **kwargs)  # type: ignore[arg-type]
    try:
        yield local
    finally:
        _stop(local)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with running("127.0.0.1", name="main") as local:
        yield local


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    """A second server on 127.0.0.2, which the default test policy does not allow."""
    with running("127.0.0.2", name="other") as local:
        yield local


@pytest.fixture
def twin_servers() -> Iterator[tuple[LocalServer, LocalServer]]:
    """Two servers on the same port, one on 127.0.0.1 and one on 127.0.0.2."""
    for _ in range(20):
        first = _start("127.0.0.1", name="first")
        try:
            second = _start("127.0.0.2", first.port, name="second")
        except OSError:
            _stop(first)
            continue
        try:
            yield first, second
        finally:
            _stop(second)
            _stop(first)
        return
    pytest.skip("could not bind the same port on 127.0.0.1 and 127.0.0.2")


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name pinned.test (made with the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=pinned.test",
         "-addext", "subjectAltName=DNS:pinned.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[LocalServer]:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with running("127.0.0.1", name="tls", ssl_context=context) as local:
        yield local


@dataclass
class FakeDns:
    """Answers getaddrinfo for made-up names; IP literals go to the real function (no DNS involved)."""

    answers: dict[str, Callable[[int], list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def add(self, name: str, *ips: str) -> None:
        self.answers[name] = lambda _call: list(ips)

    def add_changing(self, name: str, first: str, later: str) -> None:
        """The first lookup answers `first`, every later one `later` (a DNS rebinding attacker)."""
        self.answers[name] = lambda call: [first] if call == 0 else [later]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    dns = FakeDns()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in str(name) else socket.AF_INET, str(name))
        except OSError:
            pass
        else:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        call = sum(1 for seen in dns.lookups if seen == name)
        dns.lookups.append(name)
        if name not in dns.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        results = []
        for ip in dns.answers[name](call):
            if ":" in ip:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port or 0, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 0)))
        return results

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns

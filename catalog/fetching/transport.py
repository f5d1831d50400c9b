"""The connection layer under SafeFetcher: an httpcore pool that connects only to checked addresses.

Each fetch records, in a thread-local FetchState, the addresses it checked for the host it is about
to request and its deadline. PinnedBackend connects only to addresses recorded there for that exact
host and port and never resolves a name, so no second DNS lookup can swap the address; a host
without a record is refused. Its streams cut every socket timeout short at the fetch's deadline.
URLs keep their real host name, so the Host header, TLS SNI and certificate checks use that name
and pooled connections are keyed by it.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from .addresses import ResolvedAddress


@dataclass
class FetchState:
    deadline: float  # time.monotonic() value
    pins: dict[tuple[str, int], tuple[ResolvedAddress, ...]] = field(default_factory=dict)
    deadline_hit: bool = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_local = threading.local()


def current_state() -> FetchState | None:
    return getattr(_local, "state", None)


def swap_state(state: FetchState | None) -> FetchState | None:
    """Makes `state` the calling thread's current fetch state; returns the one it replaces."""
    previous = current_state()
    _local.state = state
    return previous


def pin_key(host: str, port: int) -> tuple[str, int]:
    try:
        return str(ipaddress.ip_address(host.strip("[]"))), port
    except ValueError:
        return host.lower(), port


_MIN_TIMEOUT = 0.001
# httpcore asks for 64 KiB per read. Taking whatever has arrived, up to this, gets a typical photo in one read
# and one h11 event instead of three or four; the byte cap still counts every chunk, so at most this much is
# read past it.
_READ_BYTES = 256 * 1024


def _clamp(timeout: float | None, state: FetchState | None) -> tuple[float | None, bool]:
    """The timeout cut to the fetch's deadline, and whether the deadline was the shorter.

    Never 0, which would make the socket non-blocking instead of making it time out.
    """
    if state is None:
        return timeout, False
    remaining = max(state.remaining(), _MIN_TIMEOUT)
    if timeout is None or remaining < timeout:
        return remaining, True
    return timeout, False


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every wait ends at the deadline of the fetch using it."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        state = current_state()
        timeout, clamped = _clamp(timeout, state)
        if clamped and state is not None and state.remaining() <= 0:
            state.deadline_hit = True
            raise httpcore.ReadTimeout("the fetch deadline has passed")
        try:
            return self._inner.read(max(max_bytes, _READ_BYTES), timeout)
        except httpcore.ReadTimeout:
            if clamped and state is not None:
                state.deadline_hit = True
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        state = current_state()
        timeout, clamped = _clamp(timeout, state)
        try:
            self._inner.write(buffer, timeout)
        except httpcore.WriteTimeout:
            if clamped and state is not None:
                state.deadline_hit = True
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        state = current_state()
        timeout, clamped = _clamp(timeout, state)
        try:
            return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))
        except httpcore.ConnectTimeout:
            if clamped and state is not None:
                state.deadline_hit = True
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the current fetch has checked for that host; never resolves names."""

    def __init__(self) -> None:
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        state = current_state()
        addresses = state.pins.get(pin_key(host, port)) if state else None
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} was not checked by this fetch; not connecting")
        last_error: Exception | None = None
        for address in addresses:
            clamped_timeout, clamped = _clamp(timeout, state)
            try:
                # An IP literal: socket.create_connection() parses it without any DNS lookup.
                stream = self._sockets.connect_tcp(
                    str(address.ip),
                    port,
                    timeout=clamped_timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                if clamped and state is not None and isinstance(error, httpcore.ConnectTimeout):
                    state.deadline_hit = True
                last_error = error
                continue
            return _DeadlineStream(stream)
        if last_error is None:  # not reached: addresses is never empty here
            raise httpcore.ConnectError(f"no address to connect to for {host}:{port}")
        raise last_error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


def pinned_pool(*, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> httpcore.ConnectionPool:
    """An HTTP/1.1 connection pool (no proxies, no HTTP/2) whose every connection goes through PinnedBackend."""
    return httpcore.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PinnedBackend(),
    )

"""SafeFetcher: every download (sitemaps, pages, images) goes through here.

It parses and checks each URL itself (``addresses``), follows redirects by hand (checking every hop),
and sends on ``transport.pinned_pool``, whose connections go only to the addresses just checked.

It sends on that pool itself rather than through an httpx.Client, whose per-request work (parsing the
URL again, merging headers, a cookie jar that must stay empty, auth and redirect hooks that must not
act) was a third of a fetch's CPU. The requests carry the headers the client sent, byte for byte, and
the answers' headers are decoded the way httpx decodes them.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from urllib.parse import urljoin

import httpcore
import httpx

from .addresses import Target, parse_target, resolve
from .errors import FetchError
from .policy import FetchPolicy
from .sniffing import SNIFF_BYTES, is_image_type, sniff_type
from .transport import FetchState, pin_key, pinned_pool, swap_state

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass
class FetchResult:
    url: str  # final URL after redirects
    status: int  # 2xx, or 304 when not modified
    headers: dict[str, str]  # lower-cased names
    content: bytes  # b"" for 304 and for stream()
    etag: str | None
    last_modified: str | None
    content_length: int | None
    sniffed_type: str | None
    # Seconds from sending the (last hop's) request to its answer's headers: what AutoThrottle calls latency.
    latency: float | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _translate(error: Exception, url: str, state: FetchState, policy: FetchPolicy) -> FetchError:
    """Turns an httpx / httpcore exception into a FetchError."""
    if isinstance(error, httpx.TimeoutException | httpcore.TimeoutException):
        if state.deadline_hit or state.remaining() <= 0:
            return FetchError("deadline", url, f"took longer than the {policy.deadline:g} s deadline")
        kind = type(error).__name__
        return FetchError("timeout", url, f"{kind} ({error or 'no detail'})")
    tls_error = _ssl_cause(error)
    if tls_error is not None:
        return FetchError("tls_error", url, f"TLS failed: {tls_error}", transient=False)
    if isinstance(error, httpx.NetworkError | httpcore.NetworkError):
        return FetchError("connect_error", url, f"{type(error).__name__}: {error}")
    if isinstance(error, httpx.ProtocolError | httpcore.ProtocolError | httpx.DecodingError | httpx.StreamError):
        return FetchError("protocol_error", url, f"{type(error).__name__}: {error}")
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol | httpcore.UnsupportedProtocol):
        return FetchError("bad_url", url, str(error))
    return FetchError("connect_error", url, f"{type(error).__name__}: {error}")


_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, httpcore.ConnectionNotAvailable)
_CORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.PoolTimeout,
)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """The seconds a Retry-After header asks for (RFC 9110: a number of seconds, or an HTTP date), never negative;
    None when there is none or it cannot be read."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _joined_headers(raw: Iterable[tuple[bytes, bytes]], encoding: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.lower().decode(encoding)
        text = value.decode(encoding)
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _decoded_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The answer's headers as httpx.Headers.items() gives them, so a FetchResult holds what it always held:
    lower-cased names, a repeated header's values joined with ", ", all decoded as ASCII, else UTF-8, else
    Latin-1."""
    for encoding in ("ascii", "utf-8"):
        try:
            return _joined_headers(raw, encoding)
        except UnicodeDecodeError:
            continue
    return _joined_headers(raw, "iso-8859-1")


# A compressed piece is decompressed whole before the byte cap sees the result: the piece size bounds how far
# past the cap one step can go. httpcore read 64 KiB at a time; the transport now reads more.
_DECODE_PIECE_BYTES = 64 * 1024


class _CoreStream(httpx.SyncByteStream):
    """A pool's body stream for httpx.Response to decode, in pieces of at most _DECODE_PIECE_BYTES."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            for start in range(0, len(chunk), _DECODE_PIECE_BYTES):
                yield chunk[start : start + _DECODE_PIECE_BYTES]

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _Answer:
    """An answer whose body is still on the connection; close() hands the connection back to the pool."""

    __slots__ = ("headers", "latency", "raw", "reason", "status")

    def __init__(self, raw: httpcore.Response, latency: float | None = None) -> None:
        self.raw = raw
        self.latency = latency
        self.status = raw.status
        self.headers = _decoded_headers(raw.headers)
        reason = raw.extensions.get("reason_phrase")
        self.reason = (
            httpx.codes.get_reason_phrase(raw.status) if reason is None else reason.decode("ascii", errors="ignore")
        )

    def chunks(self) -> Iterable[bytes]:
        stream = self.raw.stream
        assert isinstance(stream, Iterable)  # noqa: S101 - a sync pool's responses always are
        if "content-encoding" in self.headers:
            # The server ignored Accept-Encoding: identity. httpx decodes what it knows of it, as when the fetcher
            # sent through an httpx.Client, and the byte cap counts the decoded bytes.
            decoding = httpx.Response(self.status, headers=self.raw.headers, stream=_CoreStream(stream))
            return decoding.iter_bytes()
        return stream

    def close(self) -> None:
        self.raw.close()


class SafeFetcher:
    """Fetches http(s) URLs with an SSRF guard, byte cap, timeouts, deadline and redirect limit.

    One instance is meant to be shared by all threads of a process (the pool is thread-safe);
    close() it, or use it as a context manager, when done.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        pool_limits: httpx.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        limits = pool_limits or httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._pool = pinned_pool(ssl_context=ssl_context or httpx.create_ssl_context(), limits=limits)
        # What an httpx.Client with these defaults sent after Host, in its order. Nothing else is sent: no cookie
        # (one site's cookies must not reach another fetch, or another thread's), no credentials, no proxy headers.
        self._headers = httpx.Headers(
            [
                (b"Accept", b"*/*"),
                (b"Connection", b"keep-alive"),
                (b"User-Agent", policy.user_agent.encode("ascii")),
                # Compressed bodies could expand far beyond the byte cap within a single chunk.
                (b"Accept-Encoding", b"identity"),
            ]
        )
        self._get_headers = tuple(self._headers.raw)

    # -- public API ---------------------------------------------------------------------------

    def fetch(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        expect_image: bool = False,
    ) -> FetchResult:
        """Downloads a whole body (conditional GET when etag / last_modified are given).

        Raises FetchError; with expect_image=True also when the bytes are not an image whatever
        the Content-Type says.
        """
        cap = self._cap(max_bytes)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        with self._exchange(url, headers) as (response, final_url, state):
            if response.status == 304:
                # No body: reading its end keeps the connection alive for the next request.
                for _ in self._capped_chunks(response, final_url, cap, state):
                    pass
                return self._result(response, final_url, b"", None)
            content = b"".join(self._body(response, final_url, cap, state))
        sniffed = sniff_type(content[:SNIFF_BYTES])
        if expect_image and not is_image_type(sniffed):
            claimed = response.headers.get("content-type", "no Content-Type")
            found = sniffed or "of unknown type"
            raise FetchError("not_image", final_url, f"the body is {found} ({claimed}), not an image")
        return self._result(response, final_url, content, sniffed)

    def post(
        self, url: str, *, content: bytes, headers: dict[str, str] | None = None, max_bytes: int | None = None
    ) -> FetchResult:
        """Sends a POST (a webhook) with the same guard as every fetch: the URL and every address it resolves to
        are checked (private networks refused unless the policy allows them), the connection is pinned to those
        addresses, and the timeouts, deadline and byte cap (of the answer) hold.

        A POST is never redirected (a 3xx is an http_error) nor sent twice on a dropped connection. Raises
        FetchError; a 2xx answer is returned with its body.
        """
        cap = self._cap(max_bytes)
        with self._exchange(url, dict(headers or {}), method="POST", content=content) as (response, final_url, state):
            body = b"".join(self._body(response, final_url, cap, state))
        return self._result(response, final_url, body, None)

    @contextmanager
    def stream(self, url: str, *, max_bytes: int | None = None) -> Iterator[tuple[FetchResult, Iterator[bytes]]]:
        """Opens a big document; iterate the chunks inside the ``with`` block, in the same thread.

        The result's content is b"" (its sniffed_type comes from the first chunk); the iterator
        raises FetchError("too_large") once the cap is passed and FetchError("deadline") when the
        deadline passes.
        """
        cap = self._cap(max_bytes)
        with self._exchange(url, {}) as (response, final_url, state):
            if response.status == 304:
                yield self._result(response, final_url, b"", None), iter(())
                return
            chunks = self._body(response, final_url, cap, state)
            # Only the first chunk is awaited before returning: a slow body must not stall the open.
            head = next(chunks, b"")
            result = self._result(response, final_url, b"", sniff_type(head[:SNIFF_BYTES]))
            yield result, self._prepend(head, chunks)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _cap(self, max_bytes: int | None) -> int:
        return self.policy.max_bytes if max_bytes is None else max_bytes

    @staticmethod
    def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
        if head:
            yield head
        yield from rest

    @contextmanager
    def _exchange(
        self, url: str, headers: dict[str, str], *, method: str = "GET", content: bytes | None = None
    ) -> Iterator[tuple[_Answer, str, FetchState]]:
        """Sends the request, following a GET's redirects by hand and checking every hop; yields a 2xx or 304."""
        policy = self.policy
        state = FetchState(deadline=time.monotonic() + policy.deadline)
        previous_state = swap_state(state)
        try:
            hop_url = url
            for hop in range(policy.max_redirects + 1):
                target = self._check(hop_url, url, hop, state)
                response = self._send(target, headers, state, method=method, content=content)
                if response.status in REDIRECT_STATUSES:
                    self._check_location(response, target)
                if response.status not in REDIRECT_STATUSES or method != "GET":
                    try:
                        self._raise_for_status(response, target.url)
                        yield response, target.url, state
                    finally:
                        response.close()
                    return
                response.close()
                location = response.headers.get("location")
                if not location:
                    raise FetchError(
                        "http_error",
                        target.url,
                        f"HTTP {response.status} without a Location",
                        status=response.status,
                        transient=False,
                    )
                hop_url = urljoin(target.url, location.strip())
            raise FetchError("too_many_redirects", url, f"more than {policy.max_redirects} redirects", transient=False)
        finally:
            swap_state(previous_state)

    def _check(self, hop_url: str, url: str, hop: int, state: FetchState) -> Target:
        if state.remaining() <= 0:
            raise FetchError("deadline", url, f"took longer than the {self.policy.deadline:g} s deadline")
        try:
            target = parse_target(hop_url)
            addresses = resolve(target, self.policy, original_url=hop_url)
        except FetchError as error:
            if not hop:
                raise
            raise FetchError(
                error.reason,
                error.url,
                f"{error.detail} (redirected from {url})",
                status=error.status,
                transient=error.transient,
            ) from error
        state.pins = {pin_key(target.host, target.port): tuple(addresses)}
        return target

    def _request(
        self, method: str, target: Target, headers: dict[str, str], content: bytes | None, timeouts: dict[str, float]
    ) -> httpcore.Request:
        url = target.parsed
        core_url = httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)
        extensions = {"timeout": timeouts}
        if method == "GET":
            # Only fetch() and stream() send GETs, adding validators, which no default header shares a name with.
            extra = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
            return httpcore.Request(
                b"GET",
                core_url,
                headers=[(b"Host", url.netloc), *self._get_headers, *extra],
                # No body at all, rather than one empty chunk that h11 would turn into an event that sends nothing.
                content=(),
                extensions=extensions,
            )
        # A caller's headers (a webhook's) replace the defaults of the same name, as in an httpx.Client.
        merged = self._headers.copy()
        merged.update(headers)
        built = httpx.Request(method, url, headers=merged, content=content)
        return httpcore.Request(
            method, core_url, headers=built.headers.raw, content=built.stream, extensions=extensions
        )

    def _send(
        self,
        target: Target,
        headers: dict[str, str],
        state: FetchState,
        *,
        method: str = "GET",
        content: bytes | None = None,
    ) -> _Answer:
        policy = self.policy
        remaining = max(state.remaining(), 0.001)
        timeouts = {
            "connect": min(policy.connect_timeout, remaining),
            "read": min(policy.read_timeout, remaining),
            "write": min(policy.read_timeout, remaining),
            "pool": remaining,
        }
        request = self._request(method, target, headers, content, timeouts)
        last = 2 if method == "GET" else 1  # a POST may have reached the server: never sent twice here
        for attempt in (1, 2):
            try:
                sent = time.monotonic()
                raw = self._pool.handle_request(request)
                return _Answer(raw, time.monotonic() - sent)
            except httpcore.RemoteProtocolError as error:
                # A kept-alive connection the server closed while we reused it: the GET never reached it.
                # Send it again once, as browsers do; the pool has dropped the dead connection.
                if attempt == last or state.remaining() <= 0:
                    raise _translate(error, target.url, state, policy) from error
            except (*_TRANSPORT_ERRORS, *_CORE_ERRORS) as error:
                raise _translate(error, target.url, state, policy) from error
        raise AssertionError("unreachable")

    @staticmethod
    def _check_location(response: _Answer, target: Target) -> None:
        """Refuses a Location no URL can be made of, with the error an httpx.Client raised for it."""
        location = response.headers.get("location")
        if location is None:
            return
        try:
            parsed = httpx.URL(location)
            if parsed.is_relative_url:
                target.parsed.join(parsed)
        except httpx.InvalidURL as error:
            response.close()
            detail = f"RemoteProtocolError: Invalid URL in location header: {error}."
            raise FetchError("protocol_error", target.url, detail) from error

    @staticmethod
    def _raise_for_status(response: _Answer, url: str) -> None:
        status = response.status
        if 200 <= status < 300 or status == 304:
            return
        retry_after = retry_after_seconds(response.headers.get("retry-after")) if status in (429, 503) else None
        detail = f"HTTP {status} {response.reason}".rstrip()
        if retry_after is not None:
            detail += f" (Retry-After: {retry_after:g} s)"
        raise FetchError("http_error", url, detail, status=status, upstream_retry_after=retry_after)

    def _body(self, response: _Answer, url: str, cap: int, state: FetchState) -> Iterator[bytes]:
        declared = _header_int(response.headers.get("content-length"))
        if declared is not None and declared > cap:
            raise FetchError("too_large", url, f"Content-Length {declared} is over the {cap}-byte cap")
        return self._capped_chunks(response, url, cap, state)

    def _capped_chunks(self, response: _Answer, url: str, cap: int, state: FetchState) -> Iterator[bytes]:
        received = 0
        try:
            # Only reading the body can raise these: what the loop raises itself is a FetchError, and nothing
            # is thrown into the generator at its yield.
            for chunk in response.chunks():
                if not chunk:
                    continue
                received += len(chunk)
                if received > cap:
                    raise FetchError("too_large", url, f"the body passed the {cap}-byte cap")
                if state.remaining() <= 0:
                    raise FetchError("deadline", url, f"took longer than the {self.policy.deadline:g} s deadline")
                yield chunk
        except (*_TRANSPORT_ERRORS, *_CORE_ERRORS) as error:
            raise _translate(error, url, state, self.policy) from error

    @staticmethod
    def _result(response: _Answer, url: str, content: bytes, sniffed: str | None) -> FetchResult:
        headers = response.headers
        return FetchResult(
            url=url,
            status=response.status,
            headers=headers,
            content=content,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            content_length=_header_int(headers.get("content-length")),
            sniffed_type=sniffed,
            latency=response.latency,
        )

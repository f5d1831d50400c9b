"""SafeFetcher: every download (sitemaps, pages, images) goes through here.

It parses and checks each URL itself (``addresses``), follows redirects by hand (checking every hop),
and sends through ``transport.PinnedTransport``, which connects only to the addresses just checked.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from urllib.parse import urljoin

import httpcore
import httpx

from .addresses import Target, parse_target, resolve
from .errors import FetchError
from .policy import FetchPolicy
from .sniffing import SNIFF_BYTES, is_image_type, sniff_type
from .transport import FetchState, PinnedTransport, pin_key, swap_state

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


def _no_cookies() -> CookieJar:
    # A shared client must not carry one site's cookies into another fetch (or another thread's).
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _header_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


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
        self._client = httpx.Client(
            transport=PinnedTransport(ssl_context=ssl_context or httpx.create_ssl_context(), limits=limits),
            follow_redirects=False,
            trust_env=False,  # no proxies or .netrc credentials from the environment
            cookies=_no_cookies(),
            headers={
                "User-Agent": policy.user_agent,
                # Compressed bodies could expand far beyond the byte cap within a single chunk.
                "Accept-Encoding": "identity",
            },
        )

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
            if response.status_code == 304:
                response.read()  # no body: reading its end keeps the connection alive for the next request
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
            if response.status_code == 304:
                yield self._result(response, final_url, b"", None), iter(())
                return
            chunks = self._body(response, final_url, cap, state)
            # Only the first chunk is awaited before returning: a slow body must not stall the open.
            head = next(chunks, b"")
            result = self._result(response, final_url, b"", sniff_type(head[:SNIFF_BYTES]))
            yield result, self._prepend(head, chunks)

    def close(self) -> None:
        self._client.close()

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
    ) -> Iterator[tuple[httpx.Response, str, FetchState]]:
        """Sends the request, following a GET's redirects by hand and checking every hop; yields a 2xx or 304."""
        policy = self.policy
        state = FetchState(deadline=time.monotonic() + policy.deadline)
        previous_state = swap_state(state)
        try:
            hop_url = url
            for hop in range(policy.max_redirects + 1):
                target = self._check(hop_url, url, hop, state)
                response = self._send(target, headers, state, method=method, content=content)
                if response.status_code not in REDIRECT_STATUSES or method != "GET":
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
                        f"HTTP {response.status_code} without a Location",
                        status=response.status_code,
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

    def _send(
        self,
        target: Target,
        headers: dict[str, str],
        state: FetchState,
        *,
        method: str = "GET",
        content: bytes | None = None,
    ) -> httpx.Response:
        policy = self.policy
        remaining = max(state.remaining(), 0.001)
        timeout = httpx.Timeout(
            connect=min(policy.connect_timeout, remaining),
            read=min(policy.read_timeout, remaining),
            write=min(policy.read_timeout, remaining),
            pool=remaining,
        )
        request = self._client.build_request(method, target.url, headers=headers, content=content, timeout=timeout)
        last = 2 if method == "GET" else 1  # a POST may have reached the server: never sent twice here
        for attempt in (1, 2):
            try:
                return self._client.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpcore.RemoteProtocolError) as error:
                # A kept-alive connection the server closed while we reused it: the GET never reached it.
                # Send it again once, as browsers do; the pool has dropped the dead connection.
                if attempt == last or state.remaining() <= 0:
                    raise _translate(error, target.url, state, policy) from error
            except (*_TRANSPORT_ERRORS, *_CORE_ERRORS) as error:
                raise _translate(error, target.url, state, policy) from error
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if 200 <= status < 300 or status == 304:
            return
        raise FetchError("http_error", url, f"HTTP {status} {response.reason_phrase}".rstrip(), status=status)

    def _body(self, response: httpx.Response, url: str, cap: int, state: FetchState) -> Iterator[bytes]:
        declared = _header_int(response.headers.get("content-length"))
        if declared is not None and declared > cap:
            raise FetchError("too_large", url, f"Content-Length {declared} is over the {cap}-byte cap")
        return self._capped_chunks(response, url, cap, state)

    def _capped_chunks(self, response: httpx.Response, url: str, cap: int, state: FetchState) -> Iterator[bytes]:
        received = 0
        chunks = response.iter_bytes()
        while True:
            try:
                chunk = next(chunks, None)
            except (*_TRANSPORT_ERRORS, *_CORE_ERRORS) as error:
                raise _translate(error, url, state, self.policy) from error
            if chunk is None:
                return
            received += len(chunk)
            if received > cap:
                raise FetchError("too_large", url, f"the body passed the {cap}-byte cap")
            if state.remaining() <= 0:
                raise FetchError("deadline", url, f"took longer than the {self.policy.deadline:g} s deadline")
            yield chunk

    @staticmethod
    def _result(response: httpx.Response, url: str, content: bytes, sniffed: str | None) -> FetchResult:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return FetchResult(
            url=url,
            status=response.status_code,
            headers=headers,
            content=content,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            content_length=_header_int(headers.get("content-length")),
            sniffed_type=sniffed,
        )

"""Politeness towards the hosts a Run downloads from: at most so many requests at once per host, the waits a host
asks for (Retry-After), and Scrapy's AutoThrottle for a host that slows down.

AutoThrottle (scrapy/extensions/throttle.py): a host that needs ``latency`` seconds to answer should get a request
every ``latency / target_concurrency`` seconds, so that about ``target_concurrency`` requests are in flight there.
After each answer the delay moves to the mean of the old delay and that target, at once to the target when it is
higher; an answer that is not a success may raise the delay but never lower it (error pages are small and fast, and
would speed us up exactly when the host is in trouble). Unlike Scrapy, a host answering faster than
``slow_seconds`` is not delayed at all: the per-host limit already bounds it, and a Run's normal path takes no
sleep. A host's first request goes alone, so that a burst never reaches a host whose speed is not known yet.

Plain Python, thread-safe: one HostPoliteness per Run, shared by its fetch threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import FetchError

NORMAL_STATUSES = frozenset({200, 203, 204, 206, 304})


@dataclass(frozen=True)
class PolitenessPolicy:
    per_host: int = 6  # requests in flight at once to one host
    target_concurrency: float = 1.0  # AUTOTHROTTLE_TARGET_CONCURRENCY: requests in flight to a slow host
    slow_seconds: float = 1.0  # a host answering within this is not delayed
    max_delay: float = 60.0  # AUTOTHROTTLE_MAX_DELAY
    max_retry_after: float = 60.0  # a host asking for a longer wait is given up for the Run

    def __post_init__(self) -> None:
        if self.per_host < 1 or self.target_concurrency <= 0:
            raise ValueError("per_host must be at least 1 and target_concurrency positive")


@dataclass
class _Host:
    semaphore: threading.BoundedSemaphore
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # AutoThrottle's delay between the starts of two requests
    next_start: float = 0.0  # monotonic time before which no request may start
    paused_until: float = 0.0  # monotonic end of the wait the host asked for
    asked: float = 0.0  # the last wait it asked for, in seconds, and the status that asked (for the message)
    asked_status: int = 429
    measured: threading.Event = field(default_factory=threading.Event)  # its first answer is in
    probing: bool = False  # a thread is sending its first request


class HostSlot:
    """One request's turn at a host: say how it went with answered() or asked_to_wait()."""

    def __init__(self, politeness: HostPoliteness, host: _Host) -> None:
        self._politeness = politeness
        self._host = host

    def answered(self, *, latency: float | None, status: int) -> None:
        """AutoThrottle's adjustment after an answer whose headers took ``latency`` seconds."""
        if latency is None:
            return
        policy = self._politeness.policy
        host = self._host
        target = latency / policy.target_concurrency if latency >= policy.slow_seconds else 0.0
        with host.lock:
            delay = min(max(target, (host.delay + target) / 2.0), policy.max_delay)
            if delay < 0.001:  # halved down from a slow spell: the host is fast again
                delay = 0.0
            if status not in NORMAL_STATUSES and delay <= host.delay:
                return
            host.delay = delay

    def asked_to_wait(self, seconds: float, *, status: int) -> None:
        """The host asked us to wait (Retry-After of a 429 or 503): no request starts there before then."""
        host = self._host
        with host.lock:
            host.paused_until = max(host.paused_until, time.monotonic() + seconds)
            host.asked, host.asked_status = seconds, status


class HostPoliteness:
    """The per-host turns of one Run's fetch threads (see the module doc)."""

    def __init__(self, policy: PolitenessPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def delay(self, url: str) -> float:
        """The AutoThrottle delay of the URL's host now (0 for a fast or unknown host)."""
        return self._host(url).delay

    @contextmanager
    def turn(self, url: str, *, stop: threading.Event | None = None) -> Iterator[HostSlot]:
        """Waits for the URL's host to take one more request, then yields the request's slot.

        Waits, in order: for the host's first answer (only its first request goes alone), for a wait the host asked
        for, for a place among its ``per_host`` requests in flight, and for the AutoThrottle delay after the last
        request started. A host that asked for a wait longer than ``max_retry_after`` is given up: FetchError,
        not transient, at once and without a request. ``stop`` cuts every wait short.
        """
        host = self._host(url)
        first = self._wait_for_first_answer(host, stop)
        try:
            self._wait(self._paused_for(host, url), stop)
            with host.semaphore:
                with host.lock:
                    now = time.monotonic()
                    start = max(now, host.next_start, host.paused_until)
                    host.next_start = start + host.delay
                self._wait(start - now, stop)
                yield HostSlot(self, host)
        finally:
            if first:
                host.measured.set()

    def _host(self, url: str) -> _Host:
        name = (urlsplit(url).hostname or "").lower()
        with self._lock:
            host = self._hosts.get(name)
            if host is None:
                host = self._hosts[name] = _Host(semaphore=threading.BoundedSemaphore(self.policy.per_host))
            return host

    @staticmethod
    def _wait_for_first_answer(host: _Host, stop: threading.Event | None) -> bool:
        """True for the thread that sends the host's first request; the others wait until it is answered."""
        with host.lock:
            if not host.probing:
                host.probing = True
                return True
        while not host.measured.wait(0.1):
            if stop is not None and stop.is_set():
                break
        return False

    def _paused_for(self, host: _Host, url: str) -> float:
        with host.lock:
            left = host.paused_until - time.monotonic()
            asked, status = host.asked, host.asked_status
        if left > self.policy.max_retry_after:
            detail = (
                f"not sent: the host answered HTTP {status} asking to wait {asked:g} s (Retry-After), "
                f"longer than the {self.policy.max_retry_after:g} s a Run waits"
            )
            raise FetchError("http_error", url, detail, status=status, transient=False, upstream_retry_after=asked)
        return left

    @staticmethod
    def _wait(seconds: float, stop: threading.Event | None) -> None:
        if seconds <= 0:
            return
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

"""robots.txt rules for the images of an advertiser who asked us to respect them (RFC 9309).

The advertiser asked us to read their images, so this is off unless they turn it on. When on, an image whose path
the site's robots.txt disallows for our user agent is not fetched.

RFC 9309: the group naming our product token (case-insensitive) applies, else the ``*`` group; within it the
longest matching rule wins, an ``allow`` on a tie; ``*`` matches any characters and a final ``$`` the end. A
robots.txt that is missing (4xx) allows everything; one that cannot be read (5xx, a network failure) disallows
everything until it can be read. At most MAX_ROBOTS_BYTES are read.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .errors import FetchError
from .fetcher import SafeFetcher

MAX_ROBOTS_BYTES = 500 * 1024  # what RFC 9309 asks a crawler to read at least


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one robots.txt group: (allow, pattern) pairs; ``unreachable`` disallows every path."""

    rules: tuple[tuple[bool, str], ...] = ()
    unreachable: str = ""  # why robots.txt could not be read, when it could not

    @classmethod
    def parse(cls, text: str, *, user_agent: str) -> RobotsRules:
        token = user_agent.split("/")[0].split()[0].lower() if user_agent.strip() else "*"
        groups: dict[str, list[tuple[bool, str]]] = {}
        agents: list[str] = []
        in_rules = False
        for raw_line in text.splitlines():
            line = raw_line.split("#", 1)[0].strip()
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name, value = name.strip().lower(), value.strip()
            if name == "user-agent":
                if in_rules:  # a user-agent line after rules starts a new group
                    agents, in_rules = [], False
                agents.append(value.lower())
                for agent in agents:
                    groups.setdefault(agent, [])
            elif name in ("allow", "disallow") and agents:
                in_rules = True
                if value:  # an empty Disallow allows everything: no rule
                    for agent in agents:
                        groups[agent].append((name == "allow", value))
        chosen = groups.get(token, groups.get("*", []))
        return cls(rules=tuple(chosen))

    def allows(self, url: str) -> bool:
        if self.unreachable:
            return False
        parts = urlsplit(url)
        path = unquote(parts.path or "/") + (f"?{unquote(parts.query)}" if parts.query else "")
        best_length, allowed = -1, True
        for allow, pattern in self.rules:
            if _matches(pattern, path) and (
                len(pattern) > best_length or (len(pattern) == best_length and allow and not allowed)
            ):
                best_length, allowed = len(pattern), allow
        return allowed


def _matches(pattern: str, path: str) -> bool:
    return _compiled(unquote(pattern)).match(path) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        anchored = pattern.endswith("$")
        body = ".*".join(re.escape(piece) for piece in pattern.removesuffix("$").split("*"))
        found = re.compile(body + ("$" if anchored else ""), re.S)
        if len(_PATTERNS) < 10_000:
            _PATTERNS[pattern] = found
    return found


@dataclass
class RobotsCache:
    """The robots.txt rules of each origin, fetched once per Run (the first thread to need them reads them)."""

    fetcher: SafeFetcher
    user_agent: str
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _origins: dict[str, tuple[threading.Lock, list[RobotsRules]]] = field(default_factory=dict)

    def rules(self, url: str) -> RobotsRules:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        with self._lock:
            lock, found = self._origins.setdefault(origin, (threading.Lock(), []))
        with lock:
            if not found:
                found.append(self._read(f"{origin}/robots.txt"))
            return found[0]

    def _read(self, robots_url: str) -> RobotsRules:
        try:
            with self.fetcher.stream(robots_url, max_bytes=4 * MAX_ROBOTS_BYTES) as (_result, chunks):
                data = b""
                for chunk in chunks:
                    data += chunk
                    if len(data) >= MAX_ROBOTS_BYTES:
                        break
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:  # 429: as a 5xx (Google)
                return RobotsRules()
            return RobotsRules(unreachable=str(exc))
        return RobotsRules.parse(data[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace"), user_agent=self.user_agent)

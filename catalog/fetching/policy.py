"""What a fetcher may do: limits, timeouts and the private networks it may still reach."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for every download. Built by the caller (from Django settings or the environment)."""

    # CIDRs allowed even though they are not public, e.g. "127.0.0.0/8" for tests and the demo.
    allow_networks: tuple[str, ...] = ()
    user_agent: str = "imagetagger/0.1"
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # Total seconds for one fetch, redirects and body included.
    deadline: float = 60.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 5
    parsed_networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow_networks, str):
            raise TypeError("allow_networks is a tuple of CIDR strings, not one string")
        try:
            networks = tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in self.allow_networks)
        except ValueError as error:
            raise ValueError(f"allow_networks: {error}") from error
        object.__setattr__(self, "parsed_networks", networks)
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_bytes <= 0 or self.max_redirects < 0:
            raise ValueError("max_bytes must be positive and max_redirects not negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> FetchPolicy:
        """Reads FETCH_ALLOW_NETWORKS (comma-separated CIDRs, empty by default); keywords override."""
        env = os.environ if environ is None else environ
        raw = env.get("FETCH_ALLOW_NETWORKS", "")
        overrides.setdefault("allow_networks", tuple(part.strip() for part in raw.split(",") if part.strip()))
        return cls(**overrides)

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == network.version and address in network for network in self.parsed_networks)

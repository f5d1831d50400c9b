"""The one safe fetcher used for every download. Plain Python: settings arrive as a FetchPolicy."""

from .addresses import ResolvedAddress, blocked_reason, check_url
from .errors import FetchError
from .fetcher import FetchResult, SafeFetcher
from .policy import FetchPolicy
from .sniffing import IMAGE_TYPES, sniff_type

__all__ = [
    "IMAGE_TYPES",
    "FetchError",
    "FetchPolicy",
    "FetchResult",
    "ResolvedAddress",
    "SafeFetcher",
    "blocked_reason",
    "check_url",
    "sniff_type",
]

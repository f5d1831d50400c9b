"""What every API operation shares: the page size cap, throttling of advertisers' tokens, and the error bodies in
the schema (declared in one place, a drf-spectacular postprocessing hook). Views live in config.api_views (this
module is loaded by DRF's settings, which drf-spectacular's views import)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

# PostgreSQL's OFFSET is a bigint; nothing we serve comes near 2**31 rows.
MAX_OFFSET = 2**31 - 1
# A text without a NUL character, as a schema pattern (Python's and ECMA-262's alike): no text column can store one,
# so the middleware refuses it in any query parameter and DRF's CharField in a body (config.middleware).
NO_NUL_PATTERN = r"^[^\x00]*$"


class Pagination(LimitOffsetPagination):
    """limit/offset paging with a cap: a page holds at most `max_limit` rows (a larger limit is clamped to it, so
    one request never loads a whole 100k-image sitemap); a limit or offset that is not a number in range is a 400
    that says what to send."""

    max_limit = 500

    def _integer(self, request: Request, name: str, *, minimum: int, maximum: int, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum or (value > maximum and name != self.limit_query_param):
            raise ValidationError({name: [f"give an integer from {minimum} to {maximum}"]})
        return min(value, maximum)

    def get_limit(self, request: Request) -> int:
        default = self.default_limit or self.max_limit
        return self._integer(request, self.limit_query_param, minimum=1, maximum=self.max_limit, default=default)

    def get_offset(self, request: Request) -> int:
        return self._integer(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET, default=0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["description"] = (
            f"Page size: 1 to {self.max_limit}, default {self.default_limit}; a larger limit is clamped to "
            f"{self.max_limit}. Not a whole number, or under 1: 400."
        )
        limit["schema"] = {"type": "integer", "minimum": 1}
        offset["description"] = f"Rows to skip: 0 to {MAX_OFFSET}; out of range or not a whole number: 400."
        offset["schema"] = {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}
        return [limit, offset]


class _LiveRates(SimpleRateThrottle):
    """Reads the rate from REST_FRAMEWORK at each request, not once at import, so settings changes apply; counts
    atomically in the shared cache.

    DRF's own throttles read a list of timestamps, append and write it back: requests that arrive together read the
    same list and all but one of their writes are lost (700 requests in 4 s over 8 connections got no 429 against a
    limit of 600 a minute). Here each request adds 1 to a counter of its window with the cache's atomic `incr`
    (Redis INCR with an expiry in production, a lock in the per-process cache), so no request goes uncounted. A
    fixed window: at most `num_requests` in each `duration`, and Retry-After says when the window ends."""

    window_end: float = 0.0

    def get_rate(self) -> str | None:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return None if rate is None else str(rate)

    def allow_request(self, request: Request, view: Any) -> bool:
        # SimpleRateThrottle.__init__ parsed the rate into these (the stubs do not declare them)
        limit: int | None = getattr(self, "num_requests", None)
        duration: int | None = getattr(self, "duration", None)
        if self.rate is None or limit is None or duration is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // duration)
        self.window_end = (window + 1) * duration
        return throttle_count(f"{self.key}:{window}", timeout=duration + 1) <= limit

    def wait(self) -> float:
        return max(1.0, self.window_end - self.now)


def throttle_count(key: str, *, timeout: int) -> int:
    """Adds one to the counter at `key` (made with the timeout if missing) and returns its new value, atomically."""
    cache = SimpleRateThrottle.cache
    for _ in range(3):
        if cache.add(key, 1, timeout=timeout):
            return 1
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between the two calls: start it again
            continue
    return int(cache.incr(key))


class AdvertiserRateThrottle(_LiveRates, UserRateThrottle):
    """Advertisers' tokens and sessions: DEFAULT_THROTTLE_RATES["advertiser"] per user. Staff are not throttled."""

    scope = "advertiser"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not (user and user.is_authenticated) or user.is_staff:
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class AnonymousRateThrottle(_LiveRates, AnonRateThrottle):
    """Requests without credentials (the public schema): DEFAULT_THROTTLE_RATES["anon"] per client address."""


# The error bodies, one schema component each; the hook below puts them on every operation.
_DETAIL = {"type": "string", "description": "What went wrong, for a person."}
_CODE = {"type": "string", "description": "A stable short name of the error, for programs (domain errors)."}
ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"detail": _DETAIL, "code": _CODE},
        "required": ["detail"],
    },
    "ValidationError": {
        "type": "object",
        "description": "Invalid input: `{field: [messages]}` per invalid field or parameter, or `detail` (with "
        "`errors`, every problem of a scrape feed).",
        "properties": {"detail": _DETAIL, "code": _CODE, "errors": {"type": "array", "items": {"type": "string"}}},
        "additionalProperties": {},
    },
    "Conflict": {
        "type": "object",
        "properties": {
            "detail": _DETAIL,
            "code": _CODE,
            "active_run": {"type": "integer", "description": "The Run under way (runs of a sitemap never overlap)."},
        },
        "required": ["detail"],
    },
}
# status -> (component, description used when the operation declares none)
ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "400": ("ValidationError", "Invalid parameters or body."),
    "401": ("Error", "No credentials, or an invalid token."),
    "403": ("Error", "Not allowed: a viewer cannot change anything (or a session without its CSRF token)."),
    "404": ("Error", "No such object among those the user may see (another advertiser's objects answer 404)."),
    "409": ("Conflict", "Conflicts with the current state."),
    "413": ("Error", "The request body is larger than the operation takes."),
    "415": ("Error", "Unsupported request body media type."),
    "429": ("Error", "Too many requests: throttled; the Retry-After header says when to try again."),
}
_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def error_responses_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the errors it can answer with their bodies:
    401, 403, 404 and 429 always; 400 when it takes query parameters or a body; 415 when it takes a body; and any
    other error its view declares (409, 413), whose description is kept and whose body becomes the shared one."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(ERROR_SCHEMAS)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            codes = {"401", "403", "404", "429"} | {code for code in responses if code in ERROR_RESPONSES}
            takes_query = any(parameter.get("in") == "query" for parameter in operation.get("parameters", []))
            if takes_query or "requestBody" in operation:
                codes.add("400")
            if "requestBody" in operation:
                codes.add("415")
            # Errors are rendered like the operation's answers (the schema endpoint answers YAML or JSON).
            media_types = {"application/json"}
            for success in ("200", "201", "202"):
                media_types |= set(responses.get(success, {}).get("content", {}))
            for code in sorted(codes):
                component, description = ERROR_RESPONSES[code]
                schema = {"$ref": f"#/components/schemas/{component}"}
                responses[code] = {
                    "description": responses.get(code, {}).get("description") or description,
                    "content": {media_type: {"schema": schema} for media_type in sorted(media_types)},
                }
    return result


# OpenAPI links: how an answer leads to the next request (a client's workflows; schemathesis' stateful tests follow
# them). (method, path, status) of the answer -> (link name, method, path of the next operation, its parameters as
# runtime expressions). A paginated list links from its first row.
_FIRST = "$response.body#/results/0"
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str]]]] = {
    ("get", "/api/sitemaps/", "200"): [
        ("SitemapImages", "get", "/api/sitemaps/{sitemap_id}/images/", {"sitemap_id": f"{_FIRST}/id"}),
        ("SitemapRunStart", "post", "/api/sitemaps/{sitemap_id}/runs/", {"sitemap_id": f"{_FIRST}/id"}),
        ("SitemapRuns", "get", "/api/runs/", {"sitemap": f"{_FIRST}/id"}),
    ],
    ("post", "/api/sitemaps/{sitemap_id}/runs/", "202"): [
        ("Run", "get", "/api/runs/{run_id}/", {"run_id": "$response.body#/run"}),
        ("RunCancel", "post", "/api/runs/{run_id}/cancel/", {"run_id": "$response.body#/run"}),
    ],
    ("get", "/api/runs/", "200"): [("Run", "get", "/api/runs/{run_id}/", {"run_id": f"{_FIRST}/run"})],
    ("get", "/api/runs/{run_id}/", "200"): [
        ("RunCancel", "post", "/api/runs/{run_id}/cancel/", {"run_id": "$response.body#/run"}),
    ],
    ("post", "/api/runs/{run_id}/cancel/", "200"): [
        ("Run", "get", "/api/runs/{run_id}/", {"run_id": "$response.body#/run"}),
        ("NextRun", "post", "/api/sitemaps/{sitemap_id}/runs/", {"sitemap_id": "$response.body#/sitemap"}),
    ],
    ("get", "/api/sitemaps/{sitemap_id}/images/", "200"): [
        ("Image", "get", "/api/images/{image_id}/", {"image_id": f"{_FIRST}/id"}),
        ("ImageHistory", "get", "/api/images/{image_id}/history/", {"image_id": f"{_FIRST}/id"}),
        ("ImageFix", "post", "/api/images/{image_id}/fixes/", {"image_id": f"{_FIRST}/id"}),
    ],
    ("get", "/api/images/{image_id}/", "200"): [
        ("ImageHistory", "get", "/api/images/{image_id}/history/", {"image_id": "$response.body#/id"}),
        ("ImageFix", "post", "/api/images/{image_id}/fixes/", {"image_id": "$response.body#/id"}),
    ],
    ("get", "/api/images/{image_id}/history/", "200"): [
        ("FixRevert", "post", "/api/fixes/{fix_id}/revert/", {"fix_id": "$response.body#/fixes/0/id"}),
    ],
    ("post", "/api/images/{image_id}/fixes/", "201"): [
        ("FixRevert", "post", "/api/fixes/{fix_id}/revert/", {"fix_id": "$response.body#/id"}),
        ("ImageHistory", "get", "/api/images/{image_id}/history/", {"image_id": "$request.path.image_id"}),
        ("Image", "get", "/api/images/{image_id}/", {"image_id": "$request.path.image_id"}),
    ],
    ("post", "/api/fixes/{fix_id}/revert/", "201"): [
        ("FixRevert", "post", "/api/fixes/{fix_id}/revert/", {"fix_id": "$response.body#/id"}),
    ],
    ("post", "/api/exports/", "202"): [
        ("Export", "get", "/api/exports/{export_id}/", {"export_id": "$response.body#/id"}),
    ],
}


def links_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the LINKS on the answers they start from, naming the next operation by
    its operationId (an operation the schema leaves out, such as the staff-only exports for others, is skipped)."""
    paths = result.get("paths", {})
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, target_method, target_path, parameters in links:
            target = paths.get(target_path, {}).get(target_method)
            if target is not None:
                link = {"operationId": target["operationId"], "parameters": parameters}
                response.setdefault("links", {})[name] = link
    return result


_BLANK = {"type": "string", "maxLength": 0}


def blank_option_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: a text field that takes a blank (allow_blank) and has a pattern or a
    format is written `oneOf: [{pattern}, {maxLength: 0}]`; a blank matching the pattern too matches both, which
    oneOf forbids, so the schema refused a blank the API takes. `anyOf` says what the API does."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            options = node.get("oneOf")
            if isinstance(options, list) and len(options) == 2 and options[1] == _BLANK:
                node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    return result

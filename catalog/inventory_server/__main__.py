"""Serves a generated inventory from its own process: the demo's CDN, and the benchmark's.

    python -m catalog.inventory_server --images 200 --port 8001

prints `serving http://127.0.0.1:8001` and serves until stopped. Besides the inventory routes it answers
/_control/stats (JSON counters), /_control/rename (new URLs and ETags, same bytes) and /_control/reset.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .images import make_inventory_images
from .server import VALIDATORS, InventoryServer


def _json_route(server: InventoryServer, action: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def handle(request: BaseHTTPRequestHandler) -> None:
        if action == "rename":
            server.rename()
        elif action == "reset":
            server.reset_counters()
        body = json.dumps(
            {
                "requests": server.requests,
                "image_downloads": server.image_downloads,
                "not_modified": server.not_modified,
                "generation": server.generation,
            }
        ).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def _synth_images(count: int, seed: int) -> list[bytes]:
    """The starter models' own generator, as JPEGs of listing size: what the demo's models know."""
    from classifier.synth import vehicle_sample

    images = []
    for n in range(count):
        buffer = io.BytesIO()
        vehicle_sample(seed * 100_000 + n, size=(1024, 768)).image.save(buffer, "JPEG", quality=85)
        images.append(buffer.getvalue())
    return images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m catalog.inventory_server", description=__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--per-listing", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validators", choices=VALIDATORS, default="both")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument(
        "--synth", action="store_true", help="Serve classifier.synth vehicle photos (Dealer, Stock, Placeholder)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    images = (
        _synth_images(args.images, args.seed)
        if args.synth
        else make_inventory_images(args.images, seed=args.seed, cache_dir=args.cache_dir)
    )
    server = InventoryServer(
        images=images,
        images_per_listing=args.per_listing,
        validators=args.validators,
        host=args.host,
        bind_port=args.port,
    )
    for action in ("stats", "rename", "reset"):
        server.add_route(f"/_control/{action}", _json_route(server, action))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with server:
        sys.stdout.write(f"serving {server.base_url}\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()


if __name__ == "__main__":
    main()

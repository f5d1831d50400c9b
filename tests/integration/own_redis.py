"""A Redis server of one test alone (never the machine's): no persistence, so stopping it loses every queued and
unacknowledged task, as a broker that restarts does. Import `own_redis` (the fixture) and `OwnRedis` from here."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from config.celery_app import app
from tests.integration.conftest import wait_for


def _free_port(preferred: int = 6391) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


class OwnRedis:
    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=False
        )

    def start(self) -> OwnRedis:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--dir", str(self.directory),
             "--pidfile", str(self.directory / "redis.pid"), "--logfile", str(self.directory / "redis.log")],
            check=True, timeout=10,
        )  # fmt: skip
        wait_for(lambda: self.cli("ping").stdout.strip() == "PONG", timeout=10, what="redis to start")
        return self

    def stop(self) -> None:
        self.cli("shutdown", "nosave")
        wait_for(lambda: self.cli("ping").returncode != 0, timeout=10, what="redis to stop")

    def unacknowledged(self) -> int:
        """Tasks a worker took and has not acknowledged (kombu's hash of them, kept until the visibility timeout)."""
        return int(self.cli("hlen", "unacked").stdout.strip() or 0)

    def send(self, task, *args) -> None:
        with app.connection_for_write(self.url) as connection:
            task.apply_async(args, connection=connection)


@pytest.fixture
def own_redis(tmp_path):
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = OwnRedis(directory).start()
    yield redis
    if redis.cli("ping").returncode == 0:
        redis.stop()

"""A real Celery worker, in its own process group, on the test database and a Redis broker."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

BROKER = os.environ.get("CELERY_BROKER_URL", "")
NEEDS = "integration tests need PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL=redis://...)"


def pytest_collection_modifyitems(items):
    usable = BROKER.startswith("redis://") and os.environ.get("DATABASE_URL", "").startswith("postgres")
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if not usable:
                item.add_marker(pytest.mark.skip(reason=NEEDS))


class Worker:
    def __init__(self, media_root: Path, extra_env: dict[str, str], *, concurrency: int = 1) -> None:
        self.concurrency = concurrency
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DATABASE_CONN_MAX_AGE": "0",
            "DJANGO_MEDIA_ROOT": str(media_root),
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            **extra_env,
        }
        self.process: subprocess.Popen | None = None
        self.log = media_root.parent / f"worker-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> "Worker":
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "default,inference",
                "--concurrency",
                str(self.concurrency),
                "-n",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            env=self.env,
            cwd=settings.BASE_DIR,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL to the whole process group: the worker and its pool children die at once, mid-task."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def worker_factory(settings, tmp_path):
    from config.celery_app import app

    app.control.purge()
    settings.MEDIA_ROOT = tmp_path / "media"
    workers: list[Worker] = []

    def start(*, concurrency: int = 1, **extra_env: str) -> Worker:
        worker = Worker(settings.MEDIA_ROOT, extra_env, concurrency=concurrency).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, what: str, worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    log = worker.output()[-3000:] if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")

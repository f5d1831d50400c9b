"""The entry points as the README types them: the Celery worker and beat start beside `bin/start` on the embedded
defaults, and production settings that lack a required variable stop every entry point with that variable's name."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))


def embedded_env(var_dir: Path) -> dict[str, str]:
    """A second terminal beside `bin/start`: no DATABASE_URL, no broker, no settings module (the test run's own
    config.settings.test would hide the entry points' defaults)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "CACHE_URL")
    }
    env["IMAGETAGGER_VAR_DIR"] = str(var_dir)
    return env


def wait_for(process: subprocess.Popen[str], log: Path, text: str, *, seconds: float = 90) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode} before {text!r}:\n{output}")
        time.sleep(0.3)
    pytest.fail(f"no {text!r} within {seconds} s:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # warm shutdown: the worker stops its own pool
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_readme_celery_worker_and_beat_start_on_the_embedded_defaults(tmp_path):
    # They crashed with "'Settings' object has no attribute 'worker_state_db'": the Celery app defaulted to
    # production settings, whose missing DJANGO_SECRET_KEY Celery's lazy settings swallowed.
    env = embedded_env(tmp_path / "var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    with worker_log.open("w") as worker_out, beat_log.open("w") as beat_out:
        worker = subprocess.Popen(
            [CELERY, "-A", "config", "worker", "-Q", "default,inference,training"],
            cwd=ROOT, env=env, stdout=worker_out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # The README's beat command; INFO only so that it says it started (at WARNING it prints its banner only).
        beat = subprocess.Popen(
            [CELERY, "-A", "config", "beat", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=beat_out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(worker, worker_log, "[queues]")
            # The worker answers on the same file-system broker under this var dir.
            ping = None
            for _ in range(10):
                ping = subprocess.run(
                    [CELERY, "-A", "config", "inspect", "ping", "--timeout", "5"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
                )  # fmt: skip
                if "pong" in ping.stdout:
                    break
            assert ping is not None
            assert "pong" in ping.stdout, ping.stdout + ping.stderr + worker_log.read_text()
            beat_output = wait_for(beat, beat_log, "beat: Starting...")
            assert "DatabaseScheduler" in beat_output
            assert worker.poll() is None
            assert beat.poll() is None
        finally:
            stop(worker)
            stop(beat)
    for output in (worker_log.read_text(), beat_log.read_text()):
        assert "Traceback" not in output, output
        assert "worker_state_db" not in output


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "manage.py", "migrate", "--no-input"], id="manage.py"),
        pytest.param([sys.executable, "manage.py", "run_sitemap", "1"], id="manage.py-project-command"),
        pytest.param([sys.executable, "-c", "import config.wsgi"], id="wsgi"),
        pytest.param([CELERY, "-A", "config", "worker", "-Q", "default"], id="celery-worker"),
        pytest.param([CELERY, "-A", "config", "beat"], id="celery-beat"),
    ],
)
def test_production_settings_without_the_secret_key_stop_naming_it(tmp_path, command):
    env = embedded_env(tmp_path / "var")
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.production"
    env.pop("DJANGO_SECRET_KEY", None)

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode != 0
    # The error's last line, where a reader looks first.
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is required"), (
        result.stderr
    )


def test_s3_storage_without_its_bucket_stops_naming_it(tmp_path):
    env = embedded_env(tmp_path / "var")
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", IMAGETAGGER_STORAGE="s3")
    env.pop("AWS_STORAGE_BUCKET_NAME", None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip

    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("AWS_STORAGE_BUCKET_NAME is required when IMAGETAGGER_STORAGE=s3")
    ), result.stderr

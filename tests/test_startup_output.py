"""What bin/start prints: each line once, no broker files outside var/."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage_shell(code: str, var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", IMAGETAGGER_VAR_DIR=str(var_dir))
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_reloader_line_prints_once_and_axes_keeps_quiet(tmp_path):
    # runserver's child logs this through django.utils.autoreload; Django's own DEBUG console handler printed it
    # a second time beside the root's.
    done = manage_shell(
        "import logging; logging.getLogger('django.utils.autoreload').info('Watching for file changes with X')",
        tmp_path,
    )
    output = done.stdout + done.stderr
    assert output.count("Watching for file changes with X") == 1
    assert "AXES: BEGIN" not in output


def test_the_file_system_broker_keeps_its_exchange_tables_under_var(tmp_path):
    done = manage_shell(
        "import json; from django.conf import settings; print(json.dumps(settings.CELERY_BROKER_TRANSPORT_OPTIONS))",
        tmp_path,
    )
    options = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(options["control_folder"]).is_relative_to(tmp_path)
    assert not (ROOT / "control").exists()


def test_the_file_system_broker_connects_without_the_no_hostname_warning(tmp_path):
    # kombu logs "No hostname was supplied. Reverting to default 'localhost'" at every connection (the worker's,
    # and each task sent) when the broker URL names no host, as a bare "filesystem://" does.
    done = manage_shell(
        "from config.celery_app import app\n"
        "with app.connection_for_write() as connection:\n"
        "    connection.ensure_connection(max_retries=1)\n"
        "    print([f'{cls.__module__}.{cls.__name__}' for cls in type(connection.transport).__mro__])",
        tmp_path,
    )
    output = done.stdout + done.stderr
    assert "kombu.transport.filesystem.Transport" in output  # our write-then-rename subclass (config.broker) of it
    assert "No hostname was supplied" not in output


def test_the_editable_install_prints_no_notice(tmp_path):
    # bin/setup (run by bin/start when pyproject.toml or the locks changed) installs the project editable: with the
    # packages at the root, setuptools used an import hook and printed its "Editable installation" notice, a
    # framed paragraph, on every install. Installed under a prefix of its own here: the venv is left as it is.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", "--prefix",
         str(tmp_path / "prefix"), "-e", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert "Editable installation" not in output
    assert "Please be careful" not in output
    assert list((tmp_path / "prefix").glob("lib/python*/site-packages/__editable__.imagetagger-*.pth"))

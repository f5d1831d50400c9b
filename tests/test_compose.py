"""docker-compose.yml, checked as far as a machine without Docker can: the YAML, each service's environment against
the settings it loads (in a process of its own with exactly that environment), the commands against the entry points
they name, the order (migrations once, before everything else) and plain HTTP at http://localhost:8000 on purpose.
Not proven here: that the image builds and the containers run (README, "The production shape")."""

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# The services that run the project's image (the others are PostgreSQL's and Redis's own).
APP_SERVICES = sorted(name for name, service in SERVICES.items() if "build" in service)
# What the operator sets in the shell before `docker compose up`; everything else has a default in the file.
OPERATOR = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
# Off on purpose with DJANGO_HTTPS=false: HSTS, the HTTPS redirect, Secure session and CSRF cookies.
PLAIN_HTTP_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $$."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = shell.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if unset and op and op.endswith("?"):
            raise ValueError(f"{name}: {arg}")
        if unset and op and op.endswith("-"):
            return arg
        return value or ""

    return _VARIABLE.sub(replace, value)


def dockerfile_env() -> dict[str, str]:
    """The image's own ENV lines (KEY=VALUE pairs)."""
    env: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(pair.partition("=")[::2] for pair in shlex.split(line[4:]))
    return env


def container_env(service: str, shell: dict[str, str] = OPERATOR) -> dict[str, str]:
    """The environment the service's processes get: the image's ENV, then the file's, interpolated from `shell`."""
    declared = SERVICES[service].get("environment", {})
    return {**dockerfile_env(), **{key: interpolate(str(value), shell) for key, value in declared.items()}}


def command(service: str) -> list[str]:
    return shlex.split(interpolate(SERVICES[service]["command"], OPERATOR))


def run_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A process of its own with exactly this environment (and a PATH), like the container's."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**env, "PATH": os.environ["PATH"]}, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip


# What a service's process sees: its settings, its Celery app, and two plain-HTTP requests through its WSGI app.
_PROBE = """
import json, sys
from urllib.parse import urlsplit
import django
django.setup()
from django.conf import settings
from wsgiref.util import setup_testing_defaults
from config.celery_app import app
from config.wsgi import application

app.loader.import_default_modules()
answers = []
for path in ("/", "/favicon.ico"):
    environ = {"PATH_INFO": path, "HTTP_HOST": "localhost:8000", "SERVER_NAME": "localhost", "SERVER_PORT": "8000",
               "wsgi.url_scheme": "http"}
    setup_testing_defaults(environ)
    status = []
    b"".join(application(environ, lambda s, headers, *_: status.append((s, dict(headers)))))
    answers.append({"path": path, "status": int(status[0][0].split()[0]), "location": status[0][1].get("Location", "")})
print("PROBE", json.dumps({
    "settings_module": settings.SETTINGS_MODULE,
    "cache": settings.CACHES["default"],
    "database": {"engine": settings.DATABASES["default"]["ENGINE"], "host": settings.DATABASES["default"]["HOST"]},
    "broker": app.conf.broker_url,
    "beat_scheduler": app.conf.beat_scheduler,
    "queues": sorted({app.conf.task_default_queue} | {r["queue"] for r in app.conf.task_routes.values()}),
    "tasks": sorted(app.tasks),
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "secure_cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "media_root": str(settings.MEDIA_ROOT),
    "answers": answers,
}))
"""


def probe(service: str) -> dict[str, Any]:
    return _probe(tuple(sorted(container_env(service).items())))  # the services share one environment: one probe


@cache
def _probe(env: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    done = run_in(dict(env), "-c", _PROBE)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, done.stdout + done.stderr[-5000:]
    return json.loads(lines[-1].removeprefix("PROBE "))


def settings_read() -> set[str]:
    """Every environment variable the production settings read (base.py and production.py)."""
    names = set()
    for module in ("base", "production"):
        source = (ROOT / "config" / "settings" / f"{module}.py").read_text()
        names |= set(re.findall(r'os\.environ(?:\.get)?[\[(]\s*"([A-Z0-9_]+)"', source))
        names |= set(re.findall(r'env_(?:list|bool|required)\(\s*"([A-Z0-9_]+)"', source))
    return names


def test_the_file_has_the_production_shape():
    assert set(SERVICES) == {
        "postgres", "redis", "migrate", "web", "worker-default", "worker-inference", "worker-training", "beat",
    }  # fmt: skip
    assert APP_SERVICES == ["beat", "migrate", "web", "worker-default", "worker-inference", "worker-training"]
    assert all(SERVICES[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"} for name in APP_SERVICES)
    with pytest.raises(ValueError, match="DJANGO_SECRET_KEY"):  # compose refuses to start without it
        container_env("web", shell={})


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_a_service_sets_is_one_the_settings_read(service):
    # A misspelt name (CACHE_URLS) would be ignored in silence and the default would win.
    assert set(container_env(service)) - settings_read() - {"DJANGO_SETTINGS_MODULE", "PYTHONDONTWRITEBYTECODE",
                                                             "PYTHONUNBUFFERED"} == set()  # fmt: skip


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_service_loads_the_production_settings_on_the_shared_services(service):
    seen = probe(service)

    assert seen["settings_module"] == "config.settings.production"
    # Lockouts and throttles shared by every process (no axes.W001), the broker and the database on their services.
    assert seen["cache"] == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://redis:6379/1",
    }
    assert seen["database"] == {"engine": "django.db.backends.postgresql", "host": "postgres"}
    assert seen["broker"] == "redis://redis:6379/0"
    assert seen["beat_scheduler"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert seen["media_root"] == "/data/media"
    assert "/data/media" in {volume.split(":")[1] for volume in SERVICES[service]["volumes"]}


def test_check_deploy_with_the_compose_environment_reports_only_plain_http():
    env = container_env("web")
    plain = run_in(env, "manage.py", "check", "--deploy", "--fail-level", "CRITICAL")
    reported = set(re.findall(r"\((\w+\.\w+)\)", plain.stdout + plain.stderr))

    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "axes.W001" not in reported  # the cache is shared: CACHE_URL
    assert reported == PLAIN_HTTP_WARNINGS, plain.stdout + plain.stderr

    # Behind a TLS-terminating proxy, as the README says to run it on the internet: nothing to report.
    behind_tls = {**env, "DJANGO_HTTPS": "true", "DJANGO_CSRF_TRUSTED_ORIGINS": "https://imagetagger.example.com"}
    secure = run_in(behind_tls, "manage.py", "check", "--deploy", "--fail-level", "DEBUG")
    assert secure.returncode == 0, secure.stdout + secure.stderr
    assert "System check identified no issues (0 silenced)." in secure.stdout


def test_plain_http_on_port_8000_on_purpose():
    # Production settings redirected every request to HTTPS, which nothing in the file serves: nothing answered at
    # http://localhost:8000. Now the screens answer there over plain HTTP.
    assert SERVICES["web"]["ports"] == ["8000:8000"]
    gunicorn = command("web")
    assert gunicorn[gunicorn.index("-b") + 1] == "0.0.0.0:8000"
    seen = probe("web")
    assert seen["ssl_redirect"] is False
    assert seen["secure_cookies"] == [False, False]
    assert "localhost" in seen["allowed_hosts"]
    home, favicon = seen["answers"]
    assert (home["status"], home["location"]) == (302, "/accounts/login/")
    assert favicon["status"] in {200, 301, 302}
    assert not favicon["location"].startswith("https:")


def test_the_commands_name_entry_points_that_exist():
    lock = (ROOT / "requirements" / "production.lock").read_text()
    programs = {name: command(name)[0] for name in APP_SERVICES}
    assert set(programs.values()) == {"python", "gunicorn", "celery"}
    assert re.search(r"^gunicorn==", lock, flags=re.MULTILINE)
    assert re.search(r"^celery==", lock, flags=re.MULTILINE)

    # gunicorn's app: the module config.wsgi with its `application` (the probe imported and called it).
    web = command("web")
    assert web[1] == "config.wsgi"
    assert probe("web")["answers"]
    # manage.py's command exists under the production settings.
    assert command("migrate") == ["python", "manage.py", "migrate", "--no-input"]
    helped = run_in(container_env("migrate"), "manage.py", "help", "migrate")
    assert helped.returncode == 0, helped.stderr
    # celery -A config: the app the probe loaded, its tasks discovered; every queue has a worker.
    consumed = set()
    for name in APP_SERVICES:
        argv = command(name)
        if argv[0] != "celery":
            continue
        assert argv[1:3] == ["-A", "config"]
        if argv[3] == "worker":
            consumed |= set(argv[argv.index("-Q") + 1].split(","))
        else:
            assert argv[3] == "beat"
    seen = probe("worker-default")
    assert consumed == set(seen["queues"]) == {"default", "inference", "training"}
    assert "catalog.runs_resume_orphaned" in seen["tasks"]  # beat's sweep, in the app the workers run


def test_migrations_run_once_before_everything_else():
    healthy = {"condition": "service_healthy"}
    assert SERVICES["migrate"]["depends_on"] == {"postgres": healthy, "redis": healthy}
    assert SERVICES["migrate"].get("restart", "no") == "no"
    for name in APP_SERVICES:
        if name == "migrate":
            continue
        assert SERVICES[name]["depends_on"] == {
            "postgres": healthy, "redis": healthy, "migrate": {"condition": "service_completed_successfully"},
        }, name  # fmt: skip
        assert "migrate" not in command(name), name  # the web server no longer migrates on its own


def test_the_readme_configuration_table_lists_every_variable_the_settings_read():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))

    assert settings_read() - listed == set()

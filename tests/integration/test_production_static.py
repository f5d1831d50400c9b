"""Static files in the production shape: DEBUG off, `collectstatic` as the Dockerfile runs it, WhiteNoise in the
WSGI app. Production settings are a separate process (this one runs the test settings)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

_FETCH = """
import io, json, sys
import django
django.setup()
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from wsgiref.util import setup_testing_defaults
from config.wsgi import application

answers = {"debug": settings.DEBUG}
for name in sys.argv[1:]:
    url = staticfiles_storage.url(name)
    environ = {"PATH_INFO": url, "HTTP_HOST": "testserver", "wsgi.url_scheme": "https", "HTTPS": "on",
               "HTTP_X_FORWARDED_PROTO": "https", "HTTP_ACCEPT_ENCODING": "identity"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(application(environ, lambda s, headers, *_: status.append((s, dict(headers)))))
    answers[name] = {"url": url, "status": status[0][0], "type": status[0][1].get("Content-Type", ""),
                     "cache": status[0][1].get("Cache-Control", ""), "size": len(body)}
print("ANSWERS", json.dumps(answers))
"""


def test_static_files_answer_200_with_debug_off_under_the_production_settings(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "production-shape-test-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "IMAGETAGGER_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    manage = [sys.executable, "manage.py"]
    collected = subprocess.run(
        [*manage, "collectstatic", "--no-input"], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert (tmp_path / "static" / "staticfiles.json").exists()  # hashed names: cached for ever, safely

    names = ["vendor/htmx.min.js", "js/grid.js", "css/imagetagger.css"]
    fetched = subprocess.run(
        [sys.executable, "-c", _FETCH, *names], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True
    )
    lines = [line for line in fetched.stdout.splitlines() if line.startswith("ANSWERS ")]
    assert lines, fetched.stderr[-3000:]
    answers = json.loads(lines[-1][8:])

    assert answers.pop("debug") is False
    for name, answer in answers.items():
        source = Path(settings.BASE_DIR) / "static" / name
        assert answer["status"].startswith("200"), (name, answer)
        assert answer["url"] != f"/static/{name}", "the manifest gives hashed names"
        assert answer["size"] == source.stat().st_size, (name, answer)
        assert "max-age" in answer["cache"]
    assert answers["vendor/htmx.min.js"]["type"].startswith("text/javascript")
    assert answers["css/imagetagger.css"]["type"].startswith("text/css")

"""Security settings that hold: login brute-force lockout, API throttling of advertisers' tokens, a clean
`check --deploy` with the production settings, and CSP with the other security headers on the screens."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.factories import MembershipFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _empty_cache():
    """Lockouts and throttling count in the cache: each test starts from nothing."""
    cache.clear()
    yield
    cache.clear()


def _login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_repeated_failed_logins_lock_the_account_out_from_that_address(client):
    UserFactory(username="dealer", password="right-password-1")
    UserFactory(username="other", password="right-password-2")

    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "dealer", "wrong").status_code == 200  # the form again, with its error
    locked = _login(client, "dealer", "wrong")
    after = _login(client, "dealer", "right-password-1")  # even the right password, for now

    assert locked.status_code == 429
    assert after.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not locked out by someone guessing this one's password.
    assert _login(client, "other", "right-password-2").status_code == 302


def test_a_successful_login_before_the_limit_resets_the_count(client):
    UserFactory(username="dealer", password="right-password-1")
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "dealer", "wrong")

    assert _login(client, "dealer", "right-password-1").status_code == 302
    client.logout()
    assert _login(client, "dealer", "wrong").status_code == 200  # counting starts again


def _token_header(user):
    token, _ = Token.objects.get_or_create(user=user)
    return {"HTTP_AUTHORIZATION": f"Token {token.key}"}


def test_advertiser_tokens_are_throttled_and_staff_are_not(client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"advertiser": "3/minute"}}
    editor = MembershipFactory().user
    SitemapFactory(advertiser=editor.memberships.get().advertiser)
    staff = UserFactory(is_staff=True)

    answers = [client.get("/api/sitemaps/", **_token_header(editor)).status_code for _ in range(4)]
    staff_answers = {client.get("/api/sitemaps/", **_token_header(staff)).status_code for _ in range(10)}

    assert answers == [200, 200, 200, 429]
    throttled = client.get("/api/sitemaps/", **_token_header(editor))
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "throttled" in throttled.json()["detail"]
    assert staff_answers == {200}


def test_throttling_is_per_advertiser_user(client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"advertiser": "2/minute"}}
    first, second = MembershipFactory().user, MembershipFactory().user
    for _ in range(2):
        client.get("/api/sitemaps/", **_token_header(first))

    assert client.get("/api/sitemaps/", **_token_header(first)).status_code == 429
    assert client.get("/api/sitemaps/", **_token_header(second)).status_code == 200


def test_check_deploy_with_the_production_settings_reports_nothing():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "imagetagger.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://imagetagger.example.com",
        "CACHE_URL": "redis://127.0.0.1:6379/14",  # checks read the configuration; nothing connects
    }
    env.pop("DJANGO_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def _directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("url", ["/accounts/login/", "/staff/", "/api/docs/"])
def test_screens_send_a_strict_csp_and_the_security_headers(client, staff_client, url):
    response = staff_client.get(url)

    assert response.status_code == 200
    csp = _directives(response)
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_the_api_docs_start_script_is_a_file_not_inline(staff_client):
    page = staff_client.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>", page)

    assert scripts
    assert all("src=" in attributes for attributes in scripts)
    start = staff_client.get("/api/docs/?script=")
    assert start.status_code == 200
    assert start["Content-Type"].startswith("application/javascript")


def test_no_template_has_an_inline_script_or_event_handler():
    """script-src 'self' blocks inline scripts and on* attributes: templates load their scripts from files."""
    templates = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")]
    offenders = []
    for template in templates:
        text = template.read_text()
        offenders += [f"{template}: <script{a}>" for a in re.findall(r"<script([^>]*)>", text) if "src=" not in a]
        offenders += [f"{template}: {m}" for m in re.findall(r"\son[a-z]+\s*=", text)]
        offenders += [f"{template}: javascript: URL" for _ in re.findall(r"javascript:", text)]
    assert templates
    assert not offenders

"""One error design (core.errors): every domain error derives from ApplicationError, and one handler per interface
turns it into an answer: JSON with its code and status under /api/, a message on the screens, one line and exit code
1 in management commands. Nothing enumerates error types."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, ManagementUtility, call_command, get_commands, load_command_class
from django.urls import reverse
from rest_framework.authtoken.models import Token

from classifier.models import ModelHead, ModelVersion, OcclusionMap
from config.commands import BaseCommand
from core.errors import ApplicationError
from tests.factories import ImageAssetFactory, ListingFactory, MembershipFactory, PlacementFactory, UserFactory

ROOT = Path(__file__).resolve().parents[1]
APPS = ("core", "config", "catalog", "classifier", "reviews", "notifications")
# Exceptions of the apps that are not domain errors, each with the reason it never reaches a person.
NOT_DOMAIN_ERRORS = {
    "catalog.services.image_work.WorkersGone": "a signal between a Run's fetch threads and its fetch processes, "
    "caught where it is raised",
    "catalog.inventory.xml_sitemaps._Refuse": "carries an InventoryRefused (a domain error) out of expat's callbacks",
}
HTMX = {"HTTP_HX_REQUEST": "true"}


def _app_modules() -> list[str]:
    """Every module file of the apps (namespace packages such as classifier.services included), but migrations,
    settings and __main__ scripts."""
    names = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts or parts[:2] == ("config", "settings") or parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _app_modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # the optional training extra (torch)
            if exc.name != "torch":
                raise
            continue
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_domain_error_derives_from_application_error():
    classes = _exception_classes()

    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, ApplicationError))
    assert strays == sorted(NOT_DOMAIN_ERRORS), "derive these from core.errors.ApplicationError (or say why not)"
    # The walk saw the errors the issue named, and each has a stable code and an HTTP status of an error.
    for name in ("catalog.services.runs.RunError", "reviews.services.fixes.FixError",
                 "reviews.exports.services.ExportError", "classifier.services.promotion.PromotionError",
                 "classifier.services.training.TrainingError", "classifier.services.registry.RegistryError",
                 "catalog.fetching.errors.FetchError", "classifier.contract.ContractError"):  # fmt: skip
        assert name in classes
    for name, cls in classes.items():
        if issubclass(cls, ApplicationError):
            assert re.fullmatch("[a-z_]+", cls.code), name
            assert 400 <= cls.http_status < 600, name


def test_pure_modules_stay_free_of_django():
    """The base lives in core, which imports nothing of Django: the pure modules that raise domain errors
    (inventory, fetching, the contract) stay usable without it."""
    code = "import sys, catalog.inventory, catalog.fetching.errors, classifier.contract; print('django' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# The API: one handler, the error's own status, code and extra fields.


class Teapot(ApplicationError):
    code = "teapot"
    http_status = 418
    http_retry_after = 5

    @property
    def extra(self):
        return {"spout": 1}


@pytest.mark.django_db
def test_the_api_answers_any_domain_error_with_its_status_code_and_extra(client, monkeypatch):
    membership = MembershipFactory()
    token, _ = Token.objects.get_or_create(user=membership.user)

    def refuse(**kwargs):
        raise Teapot("no coffee here")

    monkeypatch.setattr("reviews.apis.manual_fix_create", refuse)
    placement = PlacementFactory(listing=ListingFactory(sitemap__advertiser=membership.advertiser))
    response = client.post(
        f"/api/images/{placement.pk}/fixes/", {"task": "color", "label": "Red"}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )  # fmt: skip

    assert response.status_code == 418
    assert response.json() == {"detail": "no coffee here", "code": "teapot", "spout": 1}
    assert response["Retry-After"] == "5"


# The screens: a domain error that escapes a view is a message, not a 500.


@pytest.fixture
def broken_model_placement():
    """An image and an active model whose contract does not parse: asking for its occlusion map raises
    ContractError, which the occlusion view does not catch (it catches OcclusionError only)."""
    version = ModelVersion.objects.create(
        name="broken", kind="classifier", file="models/b.onnx", sha256=hashlib.sha256(b"b").hexdigest(),
        contract={}, status="active",
    )  # fmt: skip
    ModelHead.objects.create(model_version=version, task="color", output="color", labels=[], is_active=True)
    return PlacementFactory(listing=ListingFactory(), status="ok", asset=ImageAssetFactory())


@pytest.mark.django_db
def test_a_domain_error_escaping_a_screen_is_a_page_with_the_message_and_its_status(client, broken_model_placement):
    client.raise_request_exception = False
    client.force_login(UserFactory(is_staff=True))
    url = reverse("reviews:staff-occlusion", args=[broken_model_placement.pk])

    page = client.post(url, {"task": "color"})
    fragment = client.post(url, {"task": "color"}, **HTMX)

    assert page.status_code == 400
    assert "That was refused" in page.content.decode()
    assert "name must be a non-empty string" in page.content.decode()  # the contract's own words
    assert fragment.status_code == 400
    assert fragment.content.decode().startswith('<p class="failed">')
    assert not OcclusionMap.objects.exists()


@pytest.mark.django_db
def test_a_refused_form_goes_back_to_its_page_with_the_message(client, broken_model_placement):
    client.force_login(UserFactory(is_staff=True))
    image_page = reverse("reviews:staff-image", args=[broken_model_placement.pk])

    response = client.post(
        reverse("reviews:staff-occlusion", args=[broken_model_placement.pk]), {"task": "color"},
        HTTP_REFERER=f"http://testserver{image_page}", follow=True,
    )  # fmt: skip

    assert response.redirect_chain == [(f"http://testserver{image_page}", 302)]
    messages = [str(message) for message in response.context["messages"]]
    assert len(messages) == 1
    assert "name must be a non-empty string" in messages[0]


# Management commands: one line, exit code 1.


def _our_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app.split(".")[0] in APPS}


def test_every_command_of_the_project_takes_the_shared_base():
    commands = _our_commands()

    assert {"run_sitemap", "cancel_run", "export_dataset", "activate_model"} <= set(commands)
    for name, app in commands.items():
        assert issubclass(type(load_command_class(app, name)), BaseCommand), f"{name}: use config.commands.BaseCommand"


@pytest.mark.django_db
def test_a_domain_error_ends_a_command_with_one_line_and_exit_code_1(capsys):
    with pytest.raises(CommandError, match=r"^no run 999999"):
        call_command("cancel_run", "999999")

    with pytest.raises(SystemExit) as stopped:
        ManagementUtility(["manage.py", "rollback_model", "--task", "color"]).execute()

    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("CommandError: ")
    assert err.count("\n") == 1  # one line, no traceback

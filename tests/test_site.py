"""What every page shares: the favicon, and a refusal logged as one line."""

import io
import logging
import logging.config

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from PIL import Image

from config.log_filters import ClientErrorsWithoutTraceback
from config.settings import base
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


def test_the_favicon_answers_at_its_usual_address(client):
    # Browsers ask for /favicon.ico (the admin and the API's pages name none): it was a 404.
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == FAVICON.read_bytes()
    assert Image.open(io.BytesIO(body)).format == "ICO"
    assert "max-age=86400" in response["Cache-Control"]


def test_the_screens_link_to_the_favicon(client):
    page = client.get("/accounts/login/").content.decode()

    assert '<link rel="icon" href="/static/favicon.ico"' in page
    assert finders.find("favicon.ico") == str(FAVICON)


@pytest.fixture
def site_logging():
    """The LOGGING every environment runs with (config.settings.base; the test settings configure none), put back as
    it was afterwards."""
    loggers = [logging.getLogger(name) for name in (None, "django", "django.request", "django.security")]
    saved = [(logger.level, logger.handlers[:], logger.filters[:], logger.propagate) for logger in loggers]
    logging.config.dictConfig(base.LOGGING)
    yield
    for logger, (level, handlers, filters, propagate) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.handlers[:], logger.filters[:], logger.propagate = handlers, filters, propagate


def test_a_403_is_logged_in_one_line_without_a_traceback(client, caplog, site_logging):
    # Django logs a PermissionDenied with its exception, and the console printed the whole traceback for a user
    # who opened a page that is not theirs.
    client.force_login(MembershipFactory().user)  # an advertiser's user on a staff screen
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/staff/")

    assert response.status_code == 403
    (record,) = (record for record in caplog.records if record.name == "django.request")
    assert record.getMessage() == "Forbidden (Permission denied): /staff/"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text


def test_a_server_error_keeps_its_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: /", (), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.status_code = 500

    assert ClientErrorsWithoutTraceback().filter(record)
    assert record.exc_info is not None

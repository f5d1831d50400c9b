import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from catalog.models import Sitemap

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path


def printed_password(out: str) -> str:
    return out.split("Staff login: staff / ")[-1].split()[0]


def test_demo_setup_creates_the_demo_and_a_working_staff_login(capsys, tmp_path):
    call_command("demo_setup")
    first = capsys.readouterr().out
    call_command("demo_setup")  # safe to run again: the same login, kept under var/
    again = capsys.readouterr().out

    password = printed_password(first)
    assert printed_password(again) == password
    assert (tmp_path / "staff_password").read_text().strip() == password
    assert "at http://127.0.0.1:8000/\n" in first  # the product's screens, not the admin
    user = authenticate(username="staff", password=password)
    assert user is not None
    assert user.is_staff
    sitemap = Sitemap.objects.get()
    assert (sitemap.advertiser.slug, sitemap.url) == ("demo-motors", "http://127.0.0.1:8001/sitemap.xml")


def test_a_password_changed_since_is_left_alone(capsys):
    call_command("demo_setup")
    user = get_user_model().objects.get(username="staff")
    user.set_password("chosen-by-the-newcomer")  # what manage.py changepassword staff does
    user.save()
    capsys.readouterr()

    call_command("demo_setup")

    out = capsys.readouterr().out
    assert "password changed since it was made" in out
    assert "manage.py changepassword staff" in out
    assert authenticate(username="staff", password="chosen-by-the-newcomer") is not None

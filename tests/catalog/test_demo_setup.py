import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from catalog.models import Sitemap

pytestmark = pytest.mark.django_db


def test_demo_setup_creates_the_demo_and_a_working_staff_login(capsys):
    call_command("demo_setup")
    call_command("demo_setup")  # safe to run again
    out = capsys.readouterr().out
    password = out.split("Staff login: staff / ")[-1].split()[0]

    user = authenticate(username="staff", password=password)
    assert user is not None
    assert user.is_staff
    sitemap = Sitemap.objects.get()
    assert (sitemap.advertiser.slug, sitemap.url) == ("demo-motors", "http://127.0.0.1:8001/sitemap.xml")

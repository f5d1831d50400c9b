"""manage.py grant_portal_access: an advertiser's user gets the portal, as create_api_token gives a token."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from catalog.models import Membership
from tests.factories import AdvertiserFactory, MembershipFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db


def grant(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("grant_portal_access", *args, stdout=out)
    return out.getvalue().splitlines()


def test_a_new_user_gets_a_password_that_opens_the_portal_of_that_advertiser_only(client):
    advertiser = AdvertiserFactory(slug="feed-motors", name="Feed Motors")
    own, other = SitemapFactory(advertiser=advertiser), SitemapFactory()

    first, login = grant("alice", "feed-motors", "--role", "viewer", "--create-user", "--email", "a@example.com")

    assert first == "alice may now use the portal of Feed Motors (feed-motors) as viewer: http://localhost:8000/portal/"
    username, password = login.removeprefix("Login: ").split(" / ")
    assert username == "alice"
    membership = Membership.objects.get()
    assert (membership.user.username, membership.advertiser, membership.role) == ("alice", advertiser, "viewer")
    assert membership.user.email == "a@example.com"
    assert not membership.user.is_staff
    assert client.login(username="alice", password=password)
    assert client.get("/").url == "/portal/"
    assert client.get("/portal/").status_code == 200
    assert client.get(f"/portal/sitemaps/{own.pk}/").status_code == 200
    assert client.get(f"/portal/sitemaps/{other.pk}/").status_code == 404


def test_running_it_again_changes_the_role_and_prints_no_password():
    membership = MembershipFactory(role="viewer", advertiser=AdvertiserFactory(slug="acme", name="Acme"))
    username = membership.user.username

    (changed,) = grant(username, "acme", "--role", "editor", "--create-user")
    (same,) = grant(username, "acme", "--role", "editor")

    assert changed.startswith(f"{username}'s access to Acme (acme) changed from viewer to editor")
    assert same.startswith(f"{username} already uses the portal of Acme (acme) as editor")
    assert Membership.objects.get().role == "editor"
    assert get_user_model().objects.count() == 1


def test_an_existing_user_gets_a_second_advertiser_with_editor_by_default():
    membership = MembershipFactory(advertiser=AdvertiserFactory(slug="first"))
    AdvertiserFactory(slug="second", name="Second")

    grant(membership.user.username, "second")

    assert sorted(membership.user.memberships.values_list("advertiser__slug", "role")) == [
        ("first", "editor"),
        ("second", "editor"),
    ]


def test_a_missing_user_or_advertiser_is_refused_in_one_line():
    AdvertiserFactory(slug="acme")
    UserFactory(username="bob")

    with pytest.raises(CommandError, match=r"^no user 'carol': add --create-user to create it$"):
        grant("carol", "acme")
    with pytest.raises(CommandError, match=r"^no advertiser 'nope' \(advertisers: acme\)$"):
        grant("bob", "nope", "--create-user")
    with pytest.raises(CommandError, match="invalid choice: 'owner'"):
        grant("bob", "acme", "--role", "owner")
    assert not Membership.objects.exists()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_a_staff_user_is_told_the_portal_is_not_where_they_land():
    UserFactory(username="sam", is_staff=True)
    AdvertiserFactory(slug="acme")

    assert grant("sam", "acme")[-1].startswith("Note: sam is staff")

"""The API's picture links work for a token client (no session): signed for the user who asked, for an hour, with the
scope checked again when followed. A forged, altered or expired link, or one whose user lost access, is a 404."""

import io
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Membership
from reviews import media_views
from reviews.effective_store import effective_tags_refresh
from tests.factories import ImageAssetFactory, ListingFactory, MembershipFactory, PlacementFactory, SitemapFactory

pytestmark = pytest.mark.django_db


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def world():
    sitemap = SitemapFactory()
    asset = ImageAssetFactory()
    asset.original.save(f"{asset.sha256}.jpg", ContentFile(jpeg()), save=False)
    asset.thumbnail.save(f"{asset.sha256}.jpg", ContentFile(jpeg()), save=False)
    asset.save()
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), asset=asset)
    effective_tags_refresh(placement_ids=[placement.pk])  # the API reads the stored tags, as a Run writes them
    membership = MembershipFactory(advertiser=sitemap.advertiser)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=membership.user).key}")
    return {"sitemap": sitemap, "asset": asset, "membership": membership, "api": api}


def links(world) -> dict[str, str]:
    answer = world["api"].get(f"/api/sitemaps/{world['sitemap'].pk}/images/")
    assert answer.status_code == 200, answer.content
    (item,) = answer.json()["results"]
    return {kind: item["asset"][kind] for kind in ("thumbnail", "original")}


def test_a_token_client_follows_the_picture_links_without_a_session(world):
    for kind, url in links(world).items():
        assert url.startswith("http://testserver/media/signed/"), url
        followed = Client().get(url.removeprefix("http://testserver"))  # no session, no token
        assert followed.status_code == 200, kind
        assert b"".join(followed.streaming_content) == jpeg()
        assert followed["Content-Type"] == "image/jpeg"


def test_a_link_altered_expired_or_of_a_user_who_lost_access_opens_nothing(world):
    url = links(world)["original"].removeprefix("http://testserver")
    altered = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    assert Client().get(altered).status_code == 404
    forged = media_views.signed_media_url(world["membership"].user, "exports/1/everything.jsonl")  # outside scope
    assert Client().get(forged).status_code == 404

    with mock.patch.object(media_views, "SIGNED_MEDIA_MAX_AGE", -1):  # an hour later
        assert Client().get(url).status_code == 404
    assert Client().get(url).status_code == 200

    Membership.objects.filter(pk=world["membership"].pk).delete()
    assert Client().get(url).status_code == 404  # the scope is checked when the link is followed

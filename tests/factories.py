import hashlib

import factory
from django.contrib.auth import get_user_model

from catalog.imaging import COLOR_SIGNATURE_BYTES
from catalog.models import Advertiser, ImageAsset, Listing, Membership, Placement, Run, Sitemap


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")


class AdvertiserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Advertiser

    name = factory.Sequence(lambda n: f"Advertiser {n}")
    slug = factory.Sequence(lambda n: f"advertiser-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    advertiser = factory.SubFactory(AdvertiserFactory)


class SitemapFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sitemap

    advertiser = factory.SubFactory(AdvertiserFactory)
    url = factory.Sequence(lambda n: f"https://dealer{n}.example/sitemap.xml")


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Listing

    sitemap = factory.SubFactory(SitemapFactory)
    url = factory.Sequence(lambda n: f"https://dealer.example/cars/{n}")
    key = factory.LazyAttribute(lambda o: o.url)


# A color signature (catalog.imaging.color_signature) of a mid-grey picture: every cell L = 50, a = b = 0.
GREY_SIGNATURE = "80" * COLOR_SIGNATURE_BYTES


class ImageAssetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImageAsset

    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"image {n}".encode()).hexdigest())
    phash = factory.Sequence(lambda n: f"{n:016x}")
    color_signature = GREY_SIGNATURE  # all alike: their pHashes alone tell near-duplicates apart
    width = 800
    height = 600
    format = "JPEG"
    byte_size = 1000
    original = factory.LazyAttribute(lambda o: f"originals/{o.sha256}.jpg")
    thumbnail = factory.LazyAttribute(lambda o: f"thumbnails/{o.sha256}.jpg")


class PlacementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Placement

    listing = factory.SubFactory(ListingFactory)
    url = factory.Sequence(lambda n: f"https://cdn.example/img/{n}.jpg")
    position = 0


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    sitemap = factory.SubFactory(SitemapFactory)

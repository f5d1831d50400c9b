"""S3 for real: moto's standalone server over HTTP on a local port, a bucket made with boto3, and the storage
switched to django-storages' S3 backend. A Run stores originals and thumbnails there and classifies them with a
model whose file is in the bucket too; an export freezes its zip there; browsers get short-lived presigned URLs."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Run
from catalog.services.runs import run_execute, run_start
from classifier.models import Classification
from classifier.services.inference import forget_sessions
from reviews.exports import export_create, export_freeze
from tests.factories import ListingFactory, MembershipFactory, PlacementFactory, SitemapFactory, UserFactory
from tests.reviews.export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_S3_REGION_NAME": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 API in its own process, over HTTP on a free local port."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"moto server did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@dataclass
class Bucket:
    client: Any
    name: str
    endpoint: str

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture
def bucket(settings, s3_endpoint):
    """A fresh bucket, and the default storage switched to it as production configures it."""
    name = f"imagetagger-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        region_name=KEYS["AWS_S3_REGION_NAME"],
    )
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "region_name": KEYS["AWS_S3_REGION_NAME"],
                "access_key": KEYS["AWS_ACCESS_KEY_ID"],
                "secret_key": KEYS["AWS_SECRET_ACCESS_KEY"],
                "signature_version": "s3v4",
                "querystring_auth": True,
                "querystring_expire": 300,
                "default_acl": None,
                "file_overwrite": True,
            },
        },
    }
    forget_sessions()  # a session of an earlier test's model file must not stand in for the bucket's
    yield Bucket(client, name, s3_endpoint)
    forget_sessions()


def test_the_settings_switch_to_s3_from_the_environment(bucket):
    script = (
        "import django; django.setup()\n"
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import default_storage as s\n"
        "name = s.save('probe/hello.txt', ContentFile(b'hello'))\n"
        "print(s.__class__.__name__, name, s.url(name))\n"
    )
    env = {
        **os.environ,
        **KEYS,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "IMAGETAGGER_STORAGE": "s3",
        "AWS_STORAGE_BUCKET_NAME": bucket.name,
        "AWS_S3_ENDPOINT_URL": bucket.endpoint,
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=django_settings.BASE_DIR, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    backend, name, url = out.stdout.split()
    assert (backend, name) == ("S3Storage", "probe/hello.txt")
    assert bucket.read(name) == b"hello"
    assert "X-Amz-Expires=300" in url
    assert httpx.get(url).content == b"hello"


def test_a_run_stores_originals_and_thumbnails_in_the_bucket_and_classifies_with_a_model_from_it(
    bucket, register_tiny, settings
):
    settings.CLASSIFY_INLINE_PROCESSES, settings.CLASSIFY_BATCH_SIZE = 2, 2  # forked children read the bucket too
    model = register_tiny()
    assert model.file.name in bucket.keys("models/")
    images = make_inventory_images(6, seed=11)
    with InventoryServer(images=images, images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap, enqueue=False)
        run_execute(run_id=run.pk, inline=True)
        run.refresh_from_db()

    assert (run.status, run.downloaded, run.failed) == (Run.Status.SUCCEEDED, 6, 0)
    assets = list(ImageAsset.objects.all())
    assert len(assets) == 6
    assert bucket.keys("originals/") == {asset.original.name for asset in assets}
    assert bucket.keys("thumbnails/") == {asset.thumbnail.name for asset in assets}
    assert sorted(bucket.read(asset.original.name) for asset in assets) == sorted(images)
    assert Classification.objects.filter(model_version=model, task="color").count() == 6
    assert run.classified == 6


def test_an_export_freezes_its_zip_and_manifest_into_the_bucket(bucket):
    sitemap = SitemapFactory()
    placements = [show(sitemap, stored_asset(seed)) for seed in range(4)]
    for placement, tag in zip(placements, ["Dealer", "Stock", "Dealer", "Placeholder"], strict=True):
        label(placement, tag)

    export = export_freeze(export=export_create(task="image_type", enqueue=False))

    assert {export.file.name, export.manifest.name} <= bucket.keys("exports/")
    archive = zipfile.ZipFile(io.BytesIO(bucket.read(export.file.name)))
    fulls = {name for name in archive.namelist() if ".full." in name}
    assert {name.rsplit("/", 1)[1].split(".")[0] for name in fulls} == {p.asset.sha256 for p in placements}
    rows = [json.loads(line) for line in bucket.read(export.manifest.name).splitlines()]
    assert {row["sha256"] for row in rows} == {p.asset.sha256 for p in placements}


def test_the_media_view_redirects_within_scope_to_a_presigned_url_that_works(bucket, client):
    placement = PlacementFactory(listing=ListingFactory(), status="ok", asset=stored_asset(7))
    thumbnail = placement.asset.thumbnail
    media = f"/media/{thumbnail.name}"
    assert thumbnail.url.startswith(f"{bucket.endpoint}/{bucket.name}/thumbnails/")  # templates: presigned
    assert "X-Amz-Signature=" in thumbnail.url

    anonymous = client.get(media)
    assert (anonymous.status_code, anonymous["Location"].split("?")[0]) == (302, "/accounts/login/")

    client.force_login(MembershipFactory().user)
    assert client.get(media).status_code == 404

    for user in (MembershipFactory(advertiser=placement.listing.sitemap.advertiser).user, UserFactory(is_staff=True)):
        client.force_login(user)
        response = client.get(media)
        assert response.status_code == 302
        assert "X-Amz-Expires=300" in response["Location"]
        image = httpx.get(response["Location"])
        assert (image.status_code, image.content) == (200, bucket.read(thumbnail.name))
    assert default_storage.exists(thumbnail.name)

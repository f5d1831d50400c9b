"""What a worker that died mid-Run leaves behind: originals half written, assets whose outcome was not recorded."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.utils import timezone

from catalog.imaging import inspect_image
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Run
from catalog.services import runs
from catalog.services.assets import asset_get_or_create, asset_storage_names, storage_write_atomic
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(6, seed=13)


def test_a_truncated_original_left_by_a_dead_worker_is_written_again(images):
    facts = inspect_image(images[0])
    original, _ = asset_storage_names(facts)
    path = Path(default_storage.path(original))
    path.parent.mkdir(parents=True)
    path.write_bytes(images[0][: len(images[0]) // 3])  # a worker killed mid-write, before its row existed

    with InventoryServer(images=images[:1], images_per_listing=1) as server:
        run = runs.run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        runs.run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    assert (run.status, run.downloaded) == ("succeeded", 1)
    asset = ImageAsset.objects.get()
    assert asset.original.name == original
    assert path.read_bytes() == images[0]  # detected (size and SHA-256) and written again, not trusted
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".partial")]


def test_an_intact_original_is_reused(images):
    facts = inspect_image(images[1])
    original, _ = asset_storage_names(facts)
    storage_write_atomic(default_storage, original, images[1])
    written_at = Path(default_storage.path(original)).stat().st_mtime_ns

    asset, created = asset_get_or_create(facts=facts, data=images[1])

    assert created
    assert asset.original.name == original
    assert Path(default_storage.path(original)).stat().st_mtime_ns == written_at


def test_originals_are_written_under_a_temporary_name_then_renamed(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    storage_write_atomic(storage, "originals/ab/x.jpg", b"first")
    storage_write_atomic(storage, "originals/ab/x.jpg", b"second, longer")
    assert (tmp_path / "originals/ab/x.jpg").read_bytes() == b"second, longer"
    assert (tmp_path / "originals/ab/x.jpg").stat().st_mode & 0o777 == 0o666 & ~_umask()

    with pytest.raises(TypeError):  # a write that fails midway: the name keeps what it had, no partial file
        storage_write_atomic(storage, "originals/ab/x.jpg", "not bytes")  # type: ignore[arg-type]
    assert (tmp_path / "originals/ab/x.jpg").read_bytes() == b"second, longer"
    assert sorted(p.name for p in (tmp_path / "originals/ab").iterdir()) == ["x.jpg"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_assets_a_killed_worker_created_count_as_downloaded_on_resume(images):
    with InventoryServer(images=images, images_per_listing=3) as server:
        run = runs.run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        # The first attempt: it read the inventory, and its fetch threads created 4 assets, then it was killed
        # before it recorded their outcomes on the placements.
        dead = runs.run_claim(run_id=run.pk, worker="gone.example:1")
        assert dead is not None
        runs._read_and_sync(dead)
        for data in images[:4]:
            asset_get_or_create(facts=inspect_image(data), data=data)
        Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

        runs.run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    assert (run.status, run.attempts, run.urls) == ("succeeded", 2, 6)
    assert (run.downloaded, run.cache_hits) == (6, 0), run.counters()


def test_the_same_bytes_under_two_urls_count_once_as_downloaded(images):
    with InventoryServer(images=[images[0], images[1], images[0]], images_per_listing=3) as server:
        run = runs.run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        runs.run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    assert (run.urls, run.downloaded, run.cache_hits) == (3, 2, 1)
    assert ImageAsset.objects.count() == 2


def test_an_asset_another_run_brought_in_and_has_not_recorded_yet_is_a_cache_hit(images):
    with InventoryServer(images=images, images_per_listing=3) as server:
        run = runs.run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        Run.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=1))
        # Another sitemap's Run, at the same time, downloaded 4 of these pictures and has not recorded them yet: this
        # Run's first attempt had no earlier one that could have made them.
        for data in images[:4]:
            asset_get_or_create(facts=inspect_image(data), data=data)

        runs.run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    assert (run.status, run.attempts, run.urls) == ("succeeded", 1, 6)
    assert (run.downloaded, run.cache_hits) == (2, 4), run.counters()

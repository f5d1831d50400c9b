"""Background rows for benchmarks and query-plan tests: another advertiser's images and their cached results,
so that a Run is measured in a database that holds far more than its own sitemap; and the whole-stack figure of
benchmark_classifier, which benchmark_runs measures beside its Runs.

The rows are made directly in bulk (no files, no inference): each background asset has a listing placement of
the background advertiser, a cluster of its own (so clustering a Run never has to pick them up) and one
Classification per active head. Loading is idempotent and resumable: asset i is always the same row, so a
second call with the same or a larger count only adds what is missing.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from datetime import datetime

from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import Advertiser, ImageAsset, Listing, Outcome, Placement, Sitemap
from classifier.models import Classification, ModelHead
from classifier.signals import classifications_written

BACKGROUND_SLUG = "benchmark-background"
BATCH = 10_000
PER_LISTING = 10


def starter_models_ensure(*, say: Callable[[str], object], task: str | None = None) -> None:
    """The benchmarks measure the active models: on a database with none (freshly migrated), or none for `task`,
    registers and activates the starter models as `register_starter_models` does, and says so through `say` (the
    command's stderr: its stdout may be JSON)."""
    heads = ModelHead.objects.filter(is_active=True)
    if (heads.filter(task=task) if task else heads).exists():
        return
    say(f"no active model{f' for {task}' if task else ''}: registering and activating the starter models "
        "(manage.py register_starter_models)")  # fmt: skip
    out = io.StringIO()
    call_command("register_starter_models", stdout=out)
    for line in out.getvalue().splitlines():
        say(f"  {line}")


def _sitemap() -> Sitemap:
    advertiser, _ = Advertiser.objects.get_or_create(slug=BACKGROUND_SLUG, defaults={"name": "Background advertiser"})
    sitemap, _ = Sitemap.objects.get_or_create(
        advertiser=advertiser, url="https://background.invalid/sitemap.xml", defaults={"is_enabled": False}
    )
    return sitemap


def background_count() -> int:
    """Background Classifications loaded so far."""
    sitemap = Sitemap.objects.filter(advertiser__slug=BACKGROUND_SLUG).first()
    if sitemap is None:
        return 0
    return Classification.objects.filter(
        asset_id__in=Placement.objects.filter(listing__sitemap=sitemap).values("asset_id")
    ).count()


def background_clear() -> None:
    """Deletes every background row."""
    sitemap = Sitemap.objects.filter(advertiser__slug=BACKGROUND_SLUG).first()
    if sitemap is None:
        return
    asset_ids = Placement.objects.filter(listing__sitemap=sitemap).values("asset_id")
    Classification.objects.filter(asset_id__in=asset_ids).delete()
    ids = list(asset_ids.values_list("asset_id", flat=True))
    Advertiser.objects.filter(slug=BACKGROUND_SLUG).delete()
    for start in range(0, len(ids), BATCH):
        ImageAsset.objects.filter(id__in=ids[start : start + BATCH]).delete()


def background_load(*, classifications: int, progress: bool = False) -> int:
    """Makes the database hold `classifications` background Classifications of the active heads (another
    advertiser's assets, one result per head), in bulk inserts of BATCH rows; returns how many it added. A
    database holding more than asked is cleared and loaded again."""
    heads = list(ModelHead.objects.filter(is_active=True).order_by("task"))
    if not heads:
        raise ValueError("no active model heads: register the starter models first")
    if background_count() > classifications:
        background_clear()
    sitemap = _sitemap()
    wanted_assets = math.ceil(classifications / len(heads))
    have_assets = Placement.objects.filter(listing__sitemap=sitemap).count()
    added = 0
    now = timezone.now()
    for start in range(have_assets, wanted_assets, BATCH):
        stop = min(start + BATCH, wanted_assets)
        with transaction.atomic():
            added += _load_batch(sitemap, heads, range(start, stop), classifications, now)
        if progress:
            print(f"background: {stop:,} of {wanted_assets:,} assets", flush=True)  # noqa: T201
    if added and connection.vendor == "postgresql":
        # The tables as autovacuum would keep them: statistics, and no dead rows (the cluster UPDATE leaves one per
        # asset). Without the VACUUM, the planner's probes of the index ends walk those dead entries, and every
        # Run's statement measured right after a load took 20-30 ms more to plan.
        from reviews.models import EffectiveTag

        command = "ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE"  # VACUUM: outside a transaction
        with connection.cursor() as cursor:
            for model in (ImageAsset, Listing, Placement, Classification, EffectiveTag):
                cursor.execute(f"{command} {model._meta.db_table}")
    return added


def _load_batch(sitemap: Sitemap, heads: list[ModelHead], indexes: range, limit: int, now: datetime) -> int:
    assets = ImageAsset.objects.bulk_create(
        [
            ImageAsset(
                sha256=(digest := hashlib.sha256(f"{BACKGROUND_SLUG}-{i}".encode()).hexdigest()),
                phash=digest[:16],
                width=1024,
                height=768,
                format="JPEG",
                byte_size=150_000,
                original=f"background/{digest}.jpg",
                thumbnail=f"background/{digest}.webp",
            )
            for i in indexes
        ],
        batch_size=BATCH,
    )
    ImageAsset.objects.filter(id__in=[asset.pk for asset in assets]).update(cluster_id=F("id"))
    keys = sorted({f"listing-{i // PER_LISTING}" for i in indexes})
    Listing.objects.bulk_create(
        [Listing(sitemap=sitemap, key=key, url=f"https://background.invalid/{key}", last_seen_at=now) for key in keys],
        ignore_conflicts=True,
    )
    listings = dict(Listing.objects.filter(sitemap=sitemap, key__in=keys).values_list("key", "id"))
    Placement.objects.bulk_create(
        [
            Placement(
                listing_id=listings[f"listing-{i // PER_LISTING}"],
                url=f"https://background.invalid/images/{i}.jpg",
                position=i % PER_LISTING,
                asset=asset,
                status=Placement.Status.OK,
                outcome=Outcome.NOT_MODIFIED,
                etag=f'"{asset.sha256[:16]}"',
                last_checked_at=now,
                last_seen_at=now,
            )
            for i, asset in zip(indexes, assets, strict=True)
        ],
        batch_size=BATCH,
    )
    rows = [
        Classification(
            asset=asset,
            model_version_id=head.model_version_id,
            task=head.task,
            label=head.labels[i % len(head.labels)],
            confidence=0.9,
            margin=0.8,
            scores={label: (0.9 if n == i % len(head.labels) else 0.1) for n, label in enumerate(head.labels)},
        )
        for i, asset in zip(indexes, assets, strict=True)
        for h, head in enumerate(heads)
        if i * len(heads) + h < limit
    ]
    Classification.objects.bulk_create(rows, batch_size=BATCH)
    # What the pipeline says after writing results: apps that derive from them (reviews' stored tags) follow.
    classifications_written.send(sender=Classification, asset_ids=[asset.pk for asset in assets])
    return len(rows)


def whole_stack_measure(
    *,
    images: int = 512,
    batch_size: int = 32,
    processes: list[int] | tuple[int, ...] = (1, 2),
    photos: list[bytes] | None = None,
) -> list[dict[str, float]]:
    """benchmark_classifier's figures: decode + vehicle crop + every active model on generated dealer photos
    (1024x768 JPEGs; or on `photos`, e.g. a benchmarked Run's own images) against the same models on pre-made
    tensors, and with each image's keys and thumbnail too (classifier.benchmark), in worker processes of one
    single-threaded session each, one row per number of processes. Raises ValueError when no model is active."""
    from classifier.benchmark import measure
    from classifier.services.inference import active_models
    from classifier.synth import dealer_photo_jpeg

    active = active_models()
    if not active.heads:
        raise ValueError("no active model: run register_starter_models (bin/start does)")
    versions = list(active.versions.values()) + ([active.detector] if active.detector else [])
    models = []
    for version in versions:
        with version.file.open("rb") as handle:
            models.append((handle.read(), version.contract))
    if photos is None:
        photos = [dealer_photo_jpeg(seed) for seed in range(images)]
    return [measure(models, photos, processes=n, batch_size=batch_size) for n in processes]

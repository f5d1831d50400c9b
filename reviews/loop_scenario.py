"""The loop's reference scenario: a drifted advertiser recovers, and nobody else pays for it.

Advertisers publish generated inventories over real local HTTP: one shoots its cars in a white photo booth
(classifier.synth.drifted_sample, all Dealer, a style the starter models never saw), the others publish ordinary
dealer photos, stock renders and placeholders. Every image's true type and color are known from the generator. The
scenario runs the product's own services, as the screens and commands do: Runs with the active models, human labels
(fixes and confirmations), a frozen export, candidates, the shadow pass and the promotion. Used by the end-to-end
test and by `manage.py benchmark_loop`.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from catalog.inventory_server import InventoryServer
from catalog.models import Placement, Sitemap, Task
from catalog.services import advertiser_get_or_create
from catalog.services.runs import run_execute, run_start
from classifier.contract import VEHICLE_KINDS
from classifier.models import Classification, ModelHead, ModelVersion, ScopedHead, TrainingJob
from classifier.services.inference import classify_assets
from classifier.services.shadow import shadow_models
from classifier.synth import Sample, drifted_sample, vehicle_sample
from reviews.health.queue import teaching_order
from reviews.models import ChangeSet
from reviews.services.change_sets import change_set_apply, change_set_undo
from reviews.services.fixes import Change

TASK = Task.IMAGE_TYPE.value
# The tasks the scenario can label and measure: the generator knows each image's true label for these.
TASKS = (TASK, Task.COLOR.value)
DRIFTED = "drift-motors"
IMAGES_PER_LISTING = 5
IMAGE_SIZE = (480, 360)
Stage = Callable[[str], None]
# How LoopScenario.label picks a shop's images: the review queue's order (reviews.health.queue.teaching_order), a
# seeded random sample, or the first ones in the sitemap.
PICKS = ("queue", "random", "first")


# The styles a shop's inventory is drawn in: the drifted advertiser's white booth, an ordinary dealer's photos, stock
# renders and placeholders (mostly cars, vans and pickups; now and then a motorcycle, a bus or RV or a heavy truck),
# and a dealer of mostly other vehicles than cars (NON_CAR_SHARE of its listings a motorcycle, a bus or RV or a heavy
# truck, in the ordinary dealer's photos).
STYLES = ("drifted", "ordinary", "non_car")
NON_CAR_KINDS = ("motorcycle", "bus_rv", "truck")
NON_CAR_SHARE = 0.7


def _sample(style: str, seed: int) -> Sample:
    if style == "drifted":
        return drifted_sample(seed, size=IMAGE_SIZE)
    if style == "non_car":
        pick = random.Random(seed)  # noqa: S311 - no secret
        if pick.random() < NON_CAR_SHARE:
            return vehicle_sample(seed, kind=pick.choice(NON_CAR_KINDS), size=IMAGE_SIZE)
    return vehicle_sample(seed, size=IMAGE_SIZE)


def _jpeg(style: str, seed: int) -> tuple[bytes, str, str, str]:
    sample = _sample(style, seed)
    out = io.BytesIO()
    sample.image.convert("RGB").save(out, "JPEG", quality=88)
    return out.getvalue(), sample.image_type, sample.color, sample.kind


@dataclass
class Labelled:
    """Generated JPEGs and what is true of each: image type, color ("" for a placeholder, which has none) and the
    biggest vehicle's kind ("" where there is none)."""

    images: list[bytes]
    types: list[str]
    colors: list[str]
    kinds: list[str]


def generate_labelled(style: str, count: int, *, seed: int) -> Labelled:
    """`count` JPEGs of the style (STYLES) and their truths, made on every core."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}: one of {', '.join(STYLES)}")
    seeds = [seed + i for i in range(count)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        made = list(pool.map(_jpeg, [style] * count, seeds, chunksize=32))
    return Labelled(*(list(column) for column in zip(*made, strict=True))) if made else Labelled([], [], [], [])


@dataclass
class Shop:
    slug: str
    kind: str  # its style: one of STYLES
    images: list[bytes]
    truth: list[str]
    sitemap: Sitemap | None = None
    server: InventoryServer | None = None
    truth_by_url: dict[str, str] = field(default_factory=dict)
    runs: list[int] = field(default_factory=list)  # its Runs, oldest first
    colors: list[str] = field(default_factory=list)  # true colors, "" for a placeholder
    color_by_url: dict[str, str] = field(default_factory=dict)
    vehicle_kinds: list[str] = field(default_factory=list)  # the biggest vehicle's true kind, "" where none
    vehicle_kind_by_url: dict[str, str] = field(default_factory=dict)

    def truth_of(self, task: str) -> dict[str, str]:
        """URL -> the true label for `task` (one of TASKS); "" where the image has none (a placeholder's color)."""
        if task == TASK:
            return self.truth_by_url
        if task == Task.COLOR.value:
            return self.color_by_url
        raise ValueError(f"unknown task {task!r}: the scenario knows {', '.join(TASKS)}")


@dataclass
class LoopScenario:
    """`sizes`: advertiser slug -> number of images; the DRIFTED slug gets the drifted style, a slug in `styles` the
    style named there (STYLES), the others the ordinary one. `tasks`: what label() gives each chosen image (its true
    label for each task, see TASKS)."""

    sizes: dict[str, int]
    styles: dict[str, str] = field(default_factory=dict)
    tasks: tuple[str, ...] = (TASK,)
    seed: int = 7_000_000  # far from the seeds the starter models were trained and measured on
    shops: dict[str, Shop] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    labelled: set[int] = field(default_factory=set)  # assets a human labelled (train or test of an export)
    label_sets: list[tuple[ChangeSet, set[int]]] = field(default_factory=list)  # label()'s, with their assets

    def generate(self) -> None:
        for k, (slug, count) in enumerate(self.sizes.items()):
            style = "drifted" if slug == DRIFTED else self.styles.get(slug, "ordinary")
            made = generate_labelled(style, count, seed=self.seed + 100_000 * k)
            self.shops[slug] = Shop(slug, style, made.images, made.types, colors=made.colors, vehicle_kinds=made.kinds)

    @contextmanager
    def serving(self) -> Iterator[LoopScenario]:
        """Every shop's inventory on its own local HTTP server, for as long as the block runs."""
        with ExitStack() as stack:
            for shop in self.shops.values():
                shop.server = stack.enter_context(
                    InventoryServer(images=shop.images, images_per_listing=IMAGES_PER_LISTING)
                )
                shop.truth_by_url = {shop.server.image_url(i): label for i, label in enumerate(shop.truth)}
                shop.color_by_url = {shop.server.image_url(i): color for i, color in enumerate(shop.colors)}
                shop.vehicle_kind_by_url = {shop.server.image_url(i): kind for i, kind in enumerate(shop.vehicle_kinds)}
            yield self

    def run_all(self, progress: Stage | None = None) -> None:
        """One Run per shop (created on first use), inline, with whatever models are active: the ordinary shops
        first, then the drifted one, a newcomer among advertisers the model knows (its first Run is measured
        against their images: the drift flag)."""
        for shop in sorted(self.shops.values(), key=lambda shop: shop.kind == "drifted"):
            assert shop.server is not None  # noqa: S101 - inside serving()
            advertiser = advertiser_get_or_create(slug=shop.slug)
            shop.sitemap, _ = Sitemap.objects.get_or_create(advertiser=advertiser, url=shop.server.sitemap_url)
            run = run_start(sitemap=shop.sitemap, enqueue=False)
            run_execute(run_id=run.pk, inline=True)
            shop.runs.append(run.pk)
            if progress:
                progress(f"{shop.slug}: Run {run.pk} read {len(shop.images)} images")

    def placements(self, shop: Shop) -> list[Placement]:
        return list(
            Placement.objects.filter(listing__sitemap=shop.sitemap, is_gone=False, asset__isnull=False)
            .select_related("listing__sitemap", "asset")
            .order_by("id")
        )

    def pick(self, shop: Shop, count: int, *, pick: str = "first", seed: int = 0) -> list[Placement]:
        """`count` of the shop's live images, picked by `pick` (PICKS): the review queue's order for the shop
        (teaching_order), a random sample drawn with `seed`, or the first ones."""
        placements = self.placements(shop)
        if pick == "queue":
            return teaching_order(placements=placements, task=TASK)[:count]
        if pick == "random":
            return random.Random(seed).sample(placements, min(count, len(placements)))  # noqa: S311 - no secret
        if pick == "first":
            return placements[:count]
        raise ValueError(f"unknown pick {pick!r}: one of {', '.join(PICKS)}")

    def label(self, *, fixes: dict[str, int], pick: str = "first", seed: int = 0, user: Any = None) -> int:
        """Human labels: for each shop, `n` of its images (picked by `pick`, see pick()) get their true label for each
        of the scenario's tasks (a fix where the model is wrong, a confirmation where it is right; no color for a
        placeholder), one grid save (a ChangeSet) per shop, as a reviewer on the grid would record them. Returns the
        number of fixes and confirmations written."""
        written = 0
        for slug, count in fixes.items():
            shop = self.shops[slug]
            chosen = self.pick(shop, count, pick=pick, seed=seed)
            written += self.label_placements(shop, chosen, user=user)
        return written

    def label_placements(self, shop: Shop, chosen: list[Placement], *, user: Any = None) -> int:
        """The true labels of each of these placements of the shop, as one grid save; see label()."""
        user = user or get_user_model().objects.get_or_create(username="loop-reviewer", defaults={"is_staff": True})[0]
        assert shop.sitemap is not None  # noqa: S101 - after run_all()
        changes = [
            Change(placement, task, truth[placement.url])
            for task in self.tasks
            for truth in [shop.truth_of(task)]
            for placement in chosen
            if truth[placement.url]
        ]
        change_set = change_set_apply(
            kind=ChangeSet.Kind.SAVE,
            advertiser_id=shop.sitemap.advertiser_id,
            changes=changes,
            confirmations=changes,  # where the model is right: a confirmation, which exports count as a label
            user=user,
            source="staff",
            summary=f"loop scenario: {len(changes)} labels of {shop.slug}",
        )
        if change_set is None:
            return 0
        assets = {placement.asset_id for placement in chosen if placement.asset_id}
        self.labelled |= assets
        self.label_sets.append((change_set, assets))
        return change_set.fixes

    def unlabel(self) -> None:
        """Undoes every grid save label() recorded (the product's undo: the model's tags are in effect again, no
        human label), newest first, so the scenario can be labelled another way."""
        while self.label_sets:
            change_set, assets = self.label_sets.pop()
            change_set_undo(change_set=change_set, user=None, source="staff")
            self.labelled -= assets

    def accuracy(self, task: str = TASK) -> dict[str, float]:
        """Per shop: the share of its live images that no human labelled (so never trained on), and that have a true
        label for `task` (a placeholder has no color), whose tag from the model answering for the shop (its scoped head,
        else the ACTIVE model) is the true one: what the model gives a new image of that shop. One query per shop."""
        head = ModelHead.objects.get(task=task, is_active=True)
        scoped = dict(ScopedHead.objects.filter(task=task).values_list("advertiser__slug", "model_version_id"))
        out = {}
        for slug, shop in self.shops.items():
            truth = shop.truth_of(task)
            placements = [p for p in self.placements(shop) if p.asset_id not in self.labelled and truth[p.url]]
            answering = scoped.get(slug, head.model_version_id)  # the shop's scoped head answers for it, if any
            labels = dict(
                Classification.objects.filter(
                    asset_id__in={p.asset_id for p in placements}, model_version_id=answering, task=task
                ).values_list("asset_id", "label")
            )
            right = sum(labels.get(p.asset_id or 0) == truth[p.url] for p in placements)
            out[slug] = right / len(placements) if placements else 0.0
        return out

    def accuracy_of(self, version: ModelVersion, placements: list[Placement], shop: Shop, task: str = TASK) -> float:
        """The share of these placements of the shop (those with a true label for `task`) whose tag from `version`
        (active or not: a candidate) is the true one. Classifies, with the version's heads, the images it has no
        result for (as a shadow pass does)."""
        truth = shop.truth_of(task)
        placements = [placement for placement in placements if truth[placement.url]]
        if not placements:
            return 0.0
        labels = self.labels_of(version, placements, task)
        right = sum(labels.get(p.asset_id or 0) == truth[p.url] for p in placements)
        return right / len(placements)

    def labels_of(self, version: ModelVersion, placements: list[Placement], task: str) -> dict[int, str]:
        """Asset id -> `version`'s label for `task`, classifying with its heads what it has no result for."""
        assets = {placement.asset_id for placement in placements}
        done = set(
            Classification.objects.filter(asset_id__in=assets, model_version=version, task=task).values_list(
                "asset_id", flat=True
            )
        )
        missing = list({p.asset_id: p.asset for p in placements if p.asset_id not in done and p.asset}.values())
        models = shadow_models(version)
        for start in range(0, len(missing), 64):
            classify_assets([asset for asset in missing[start : start + 64] if asset is not None], models)
        return dict(
            Classification.objects.filter(asset_id__in=assets, model_version=version, task=task).values_list(
                "asset_id", "label"
            )
        )

    def kind_accuracy(self, version: ModelVersion, task: str = TASK) -> dict[str, tuple[int, float]]:
        """Per true vehicle kind of the biggest vehicle: (images, accuracy of `version`'s tags for `task`) over every
        shop's live images that no human labelled and that have a true label for the task."""
        right: dict[str, int] = {}
        seen: dict[str, int] = {}
        for shop in self.shops.values():
            truth = shop.truth_of(task)
            held_out = [
                p
                for p in self.placements(shop)
                if p.asset_id not in self.labelled and truth[p.url] and shop.vehicle_kind_by_url.get(p.url)
            ]
            labels = self.labels_of(version, held_out, task)
            for placement in held_out:
                kind = shop.vehicle_kind_by_url[placement.url]
                seen[kind] = seen.get(kind, 0) + 1
                right[kind] = right.get(kind, 0) + (labels.get(placement.asset_id or 0) == truth[placement.url])
        return {kind: (seen[kind], right[kind] / seen[kind]) for kind in VEHICLE_KINDS if kind in seen}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - started, 2)


def best_candidate(job: TrainingJob) -> ModelVersion:
    return ModelVersion.objects.get(pk=job.result["best"])

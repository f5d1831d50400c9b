"""Running the active models on image bytes: sessions loaded once per process, detector boxes cached.

Sessions are created lazily, on first use in the process that uses them: in a Celery prefork worker that is
the child after the fork (never the parent), as DESIGN.md requires. Each session uses one intra-op thread;
throughput comes from running one process per core.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import F, Func, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.db.models.lookups import LessThan
from django.utils import timezone

from catalog.decoding import malloc_give_back
from catalog.models import ImageAsset
from catalog.services.deadlocks import atomic_retrying_deadlocks
from classifier.contract import ClassifierContract, DetectorContract, parse_contract
from classifier.heads import HeadResult
from classifier.models import Classification, Detection, ModelHead, ModelVersion
from classifier.preprocess import Decoded, decode
from classifier.runtime import ClassifierModel, CropHint, DetectorModel, Pipeline, make_session
from classifier.signals import classifications_written

logger = logging.getLogger(__name__)


@dataclass
class ActiveModels:
    """The active head of each task, the classifier versions they belong to, and the active detector."""

    heads: dict[str, ModelHead]
    detector: ModelVersion | None

    @property
    def key(self) -> tuple[object, ...]:
        # with each file's SHA-256, as the sessions are kept (_loaded)
        return (
            tuple(sorted((t, h.model_version_id, h.model_version.sha256) for t, h in self.heads.items())),
            self.detector and (self.detector.pk, self.detector.sha256),
        )

    @property
    def versions(self) -> dict[int, ModelVersion]:
        return {head.model_version_id: head.model_version for head in self.heads.values()}

    def tasks_of(self, version_id: int) -> list[str]:
        return [task for task, head in self.heads.items() if head.model_version_id == version_id]


def active_models(tasks: list[str] | None = None) -> ActiveModels:
    heads = ModelHead.objects.filter(is_active=True).select_related("model_version")
    if tasks is not None:
        heads = heads.filter(task__in=tasks)
    detector = ModelVersion.objects.filter(kind=ModelVersion.Kind.DETECTOR, status=ModelVersion.Status.ACTIVE).first()
    return ActiveModels(heads={head.task: head for head in heads}, detector=detector)


@dataclass
class LoadedModels:
    classifiers: dict[int, ClassifierModel] = field(default_factory=dict)
    detector: DetectorModel | None = None
    detector_version_id: int | None = None
    # A model that could not be loaded fails its tasks on every image, visibly, and the others still run.
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def min_size(self) -> tuple[int, int]:
        specs = [model.contract.input for model in self.classifiers.values()]
        if self.detector is not None:
            specs.append(self.detector.contract.input)
        return (max((s.width for s in specs), default=224), max((s.height for s in specs), default=224))


# By (id, SHA-256 of the file): an id alone can name another file once a transaction that made it rolled back (SQLite
# gives the id again), and the process would run the wrong graph.
_loaded: dict[tuple[int | None, str], object] = {}
_lock = threading.Lock()
_model_sets: dict[tuple[object, ...], LoadedModels] = {}  # load_models_cached, by ActiveModels.key


def forget_sessions() -> None:
    """Drops the sessions this process holds (a forked child creates its own, after the fork)."""
    with _lock:
        _loaded.clear()
        _model_sets.clear()


def sessions_after_fork() -> None:
    """In a forked child that keeps its parent's sessions (created before the fork, shared copy-on-write): a new lock,
    since a thread of the parent may have held the old one at the fork. A session is safe to use after a fork: it
    runs on the calling thread alone (runtime.make_session: one intra-op and one inter-op thread, so no pool)."""
    global _lock
    _lock = threading.Lock()


def _session_for(version: ModelVersion) -> Any:
    with _lock:
        key = (version.pk, version.sha256)
        session = _loaded.get(key)
        if session is None:
            with version.file.open("rb") as handle:
                session = make_session(handle.read())
            _loaded[key] = session
        return session


def load_models(active: ActiveModels) -> LoadedModels:
    """The models of this set, each ONNX session created once per process and reused."""
    loaded = LoadedModels()
    contracts: dict[int, ClassifierContract] = {}
    for version_id, version in active.versions.items():
        contract = parse_contract(version.contract)
        assert isinstance(contract, ClassifierContract)  # noqa: S101 - heads belong to classifiers only
        contracts[version_id] = contract
        try:
            loaded.classifiers[version_id] = ClassifierModel(_session_for(version), contract)
        except Exception as exc:
            logger.exception("model %s could not be loaded", version)
            loaded.errors[version_id] = f"model {version.name} could not be loaded: {type(exc).__name__}: {exc}"
    cropped = [version_id for version_id, contract in contracts.items() if contract.crop == "vehicle"]
    if active.detector is not None and cropped:
        contract = parse_contract(active.detector.contract)
        assert isinstance(contract, DetectorContract)  # noqa: S101
        try:
            loaded.detector = DetectorModel(_session_for(active.detector), contract)
            loaded.detector_version_id = active.detector.pk
        except Exception as exc:
            logger.exception("detector %s could not be loaded", active.detector)
            for version_id in cropped:
                loaded.errors[version_id] = f"detector {active.detector.name} could not be loaded: {exc}"
    return loaded


def load_models_cached(active: ActiveModels) -> LoadedModels:
    """load_models, kept per process for this set of active models: for callers that classify one image at a time."""
    with _lock:
        loaded = _model_sets.get(active.key)
    if loaded is None:
        loaded = load_models(active)
        with _lock:
            _model_sets[active.key] = loaded
    return loaded


def models_min_size(active: ActiveModels) -> tuple[int, int]:
    """The decode size every active model can be fed from (LoadedModels.min_size), read from the contracts alone:
    no session is created."""
    specs = []
    cropped = False
    for version in active.versions.values():
        contract = parse_contract(version.contract)
        assert isinstance(contract, ClassifierContract)  # noqa: S101 - heads belong to classifiers only
        specs.append(contract.input)
        cropped = cropped or contract.crop == "vehicle"
    if active.detector is not None and cropped:
        detector = parse_contract(active.detector.contract)
        assert isinstance(detector, DetectorContract)  # noqa: S101
        specs.append(detector.input)
    return (max((s.width for s in specs), default=224), max((s.height for s in specs), default=224))


def classify_decoded(image: Decoded | Exception, active: ActiveModels) -> ImageResult:
    """Every active head on one decoded image (the detector for its crop: no box of a new image is cached), with
    this process's sessions; nothing is stored (see classifications_store)."""
    return infer([image], active, load_models_cached(active))[0]


Box = tuple[int, int, int, int]


@dataclass
class ImageResult:
    """Every active task's answer for one image (or its error), and the crop the vehicle models saw."""

    results: dict[str, HeadResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    crop: list[int] | None = None  # [x0, y0, x1, y1] in original pixels
    crop_source: str = Classification.CropSource.NONE
    crop_kind: str = ""  # the vehicle's kind, when the detector ran and its contract says


def decode_all(datas: list[bytes], loaded: LoadedModels) -> list[Decoded | Exception]:
    decoded: list[Decoded | Exception] = []
    for data in datas:
        try:
            decoded.append(decode(data, min_size=loaded.min_size))
        except Exception as exc:  # an undecodable image fails its tasks, not the batch
            decoded.append(exc)
    return decoded


def _decode_asset(asset: ImageAsset, loaded: LoadedModels) -> Decoded | Exception:
    try:
        with asset.original.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        logger.warning("asset %s: cannot read %s: %s", asset.pk, asset.original.name, exc)
        data = b""
    return decode_all([data], loaded)[0]


# Images per inference of a model. A batch of 32 through the starter models peaked ~60 MB above one of 8 (their
# input tensors and activations), in each inference process, and was no faster on our machines.
INFER_CHUNK = 8


def infer(
    images: list[Decoded | Exception],
    active: ActiveModels,
    loaded: LoadedModels,
    *,
    known_boxes: dict[int, Box | None] | None = None,
) -> list[ImageResult]:
    """Every active head on the decoded images through classifier.runtime.Pipeline: the detector once per image
    (unless its box is known: `known_boxes` maps an image's index to its cached box in decoded pixels), then one
    inference per model for the whole batch. A model that could not be loaded, or an image that could not be
    decoded, fails its tasks with the reason."""
    out = [ImageResult() for _ in images]
    good = [i for i, image in enumerate(images) if isinstance(image, Decoded)]
    for i, image in enumerate(images):
        if isinstance(image, Exception):
            out[i].errors = dict.fromkeys(active.heads, f"decode: {image}")
    for version_id, error in loaded.errors.items():
        for i in good:
            out[i].errors.update(dict.fromkeys(active.tasks_of(version_id), error))
    running = [
        (version_id, model) for version_id, model in loaded.classifiers.items() if version_id not in loaded.errors
    ]
    if not good or not running:
        return out
    pipeline = Pipeline(
        [model for _, model in running],
        loaded.detector,
        serves=[active.tasks_of(version_id) for version_id, _ in running],
    )
    hints: list[CropHint | None] = [
        (known_boxes[i], "detector" if known_boxes[i] else "no_vehicle") if known_boxes and i in known_boxes else None
        for i in good
    ]
    decoded = [images[i] for i in good]
    tagged = []
    for start in range(0, len(decoded), INFER_CHUNK):
        chunk = slice(start, start + INFER_CHUNK)
        tagged.extend(pipeline.run(decoded[chunk], crops=hints[chunk]))  # type: ignore[arg-type]
    for i, tags in zip(good, tagged, strict=True):
        image = images[i]
        assert isinstance(image, Decoded)  # noqa: S101
        out[i].results = dict(tags.tags)
        out[i].errors.update(tags.errors)
        out[i].crop, out[i].crop_source = _to_original(tags.crop, image), tags.crop_source
        out[i].crop_kind = tags.crop_kind
    return out


def classify_assets(assets: list[ImageAsset], active: ActiveModels) -> list[ImageResult]:
    """Classifies the assets with every active head and stores the results, and new detector boxes, in the
    cache. A failure is stored as a failed Classification with its reason, never as a label."""
    loaded = load_models(active)
    # One image at a time, read and decoded to the models' size: a batch never holds its files or full-size pixels.
    images = [_decode_asset(asset, loaded) for asset in assets]
    cached: dict[int, list[int] | None] = {}
    if loaded.detector is not None:
        cached = dict(
            Detection.objects.filter(
                model_version_id=loaded.detector_version_id, asset_id__in=[a.pk for a in assets]
            ).values_list("asset_id", "box")
        )
    known = {
        i: _to_decoded(cached[asset.pk], image)
        for i, (asset, image) in enumerate(zip(assets, images, strict=True))
        if asset.pk in cached and isinstance(image, Decoded)
    }
    results = infer(images, active, loaded, known_boxes=known)
    del images  # the batch's pixels and the models' buffers go back to the system before the results are stored
    malloc_give_back()
    classifications_store(
        found=[(asset.pk, result) for asset, result in zip(assets, results, strict=True)],
        active=active,
        detector_version_id=loaded.detector_version_id if loaded.detector is not None else None,
        cached_boxes={assets[i].pk for i in known},
    )
    return results


def classifications_store(
    *,
    found: list[tuple[int, ImageResult]],
    active: ActiveModels,
    detector_version_id: int | None,
    cached_boxes: set[int] | frozenset[int] = frozenset(),
    signal: bool = True,
) -> None:
    """Stores each asset's result of every active head (a failure as a failed Classification with its reason) and
    the detector boxes found (not those in `cached_boxes`, which came from the cache), in one transaction, and
    sends classifications_written (`signal=False`: the caller refreshes what derives from them itself, in the
    same transaction, as a Run's fetch does for its batch). Upserts on the natural keys: storing an asset twice
    leaves one row a task."""
    if not found:
        return
    rows: list[ResultRow] = []
    detections: list[Detection] = []
    for asset_id, result in found:
        detected = result.crop_source in (Classification.CropSource.DETECTOR, Classification.CropSource.NO_VEHICLE)
        if detector_version_id is not None and asset_id not in cached_boxes and detected:
            # a detector failure is not "no vehicle": only what it found is cached
            detections.append(
                Detection(
                    asset_id=asset_id, model_version_id=detector_version_id, box=result.crop, kind=result.crop_kind
                )
            )
        for task, head in active.heads.items():
            vehicle = head.model_version.contract.get("crop") == "vehicle"
            if task in result.results:
                rows.append(
                    _ok(
                        asset_id,
                        head.model_version_id,
                        result.results[task],
                        box=result.crop if vehicle else None,
                        source=result.crop_source if vehicle else Classification.CropSource.NONE,
                    )
                )
            else:
                rows.append(_failed(asset_id, head, result.errors.get(task, "no result")))
    # In key order: two batches storing results of the same pictures (Runs of sitemaps sharing them) lock the rows
    # in the same order, and wait for each other instead of deadlocking.
    rows.sort(key=lambda row: (row.asset_id, row.model_version_id, row.task))
    detections.sort(key=lambda detection: detection.asset_id)
    asset_ids = sorted({asset_id for asset_id, _ in found})

    def write() -> None:
        Detection.objects.bulk_create(detections, ignore_conflicts=True)
        _classifications_upsert(rows)
        if signal:  # last: the stored tags' refresh takes their lock (reviews.effective_store)
            classifications_written.send(sender=Classification, asset_ids=asset_ids)

    atomic_retrying_deadlocks(write, what=f"storing the results of {len(found)} images")


_UPSERT_FIELDS = ["status", "label", "confidence", "margin", "scores", "crop_box", "crop_source", "error", "updated_at"]


class ResultRow(NamedTuple):
    """One Classification's columns as classifications_store writes them (a tuple: a Run stores four an image, and
    a model instance costs ~0.1 ms of Python to build in the recording thread)."""

    asset_id: int
    model_version_id: int
    task: str
    status: str
    label: str = ""
    confidence: float | None = None
    margin: float | None = None
    scores: dict[str, float] | None = None  # None: {}
    crop_box: list[int] | None = None
    crop_source: str = Classification.CropSource.NONE
    error: str = ""


def _classifications_upsert(rows: list[ResultRow]) -> None:
    """Inserts the rows, or updates them on their natural key (asset, model version, task). On PostgreSQL one INSERT
    from unnested arrays (eleven parameters whatever the number of rows): bulk_create's per-value adaptation cost a
    millisecond of Python an image, the largest share of what a Run's recording thread did for a new image."""
    if connection.vendor != "postgresql":
        Classification.objects.bulk_create(
            [Classification(**{**row._asdict(), "scores": row.scores or {}}) for row in rows],
            update_conflicts=True,
            unique_fields=["asset", "model_version", "task"],
            update_fields=_UPSERT_FIELDS,
        )
        return
    columns = ResultRow._fields
    values: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
    values[columns.index("scores")] = [json.dumps(scores or {}) for scores in values[columns.index("scores")]]
    values[columns.index("crop_box")] = [
        None if box is None else json.dumps(box) for box in values[columns.index("crop_box")]
    ]
    now = timezone.now()
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _UPSERT_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Classification._meta.db_table} ({', '.join(columns)}, created_at, updated_at) "  # noqa: S608 - our table and columns
            "SELECT a, m, t, s, l, c, g, sc::jsonb, cb::jsonb, cs, e, %s, %s FROM unnest("
            "%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], "
            "%s::text[], %s::text[], %s::text[], %s::text[]) AS v(a, m, t, s, l, c, g, sc, cb, cs, e) "
            f"ON CONFLICT (asset_id, model_version_id, task) DO UPDATE SET {updates}",
            [now, now, *values],
        )


def _to_original(box: tuple[int, int, int, int] | None, image: Decoded) -> list[int] | None:
    if box is None:
        return None
    return [round(v / image.scale) for v in box]


def _to_decoded(box: list[int] | None, image: Decoded) -> tuple[int, int, int, int] | None:
    if box is None:
        return None
    x0, y0, x1, y1 = (round(v * image.scale) for v in box)
    return (x0, y0, x1, y1)


def _ok(asset_id: int, version_id: int, result: HeadResult, *, box: list[int] | None, source: str) -> ResultRow:
    return ResultRow(
        asset_id=asset_id,
        model_version_id=version_id,
        task=result.task,
        status=Classification.Status.OK,
        label=result.label,
        confidence=result.confidence,
        margin=result.margin,
        scores=result.scores,
        crop_box=box,
        crop_source=source,
    )


def _failed(asset_id: int, head: ModelHead, error: str) -> ResultRow:
    return ResultRow(
        asset_id=asset_id,
        model_version_id=head.model_version_id,
        task=head.task,
        status=Classification.Status.FAILED,
        error=error[:2000],
    )


def heads_done(active: ActiveModels, done: Q) -> Func:
    """How many active heads have a result matching `done` for the outer asset (an OuterRef("pk") on ImageAsset).

    A scalar subquery, which PostgreSQL runs once per outer asset as a probe of the unique key (asset, model
    version, task): its cost follows the number of assets filtered, never the size of the Classification table,
    whatever the planner's statistics say (a NOT IN, or NOT EXISTS in an OR, may become a hash over every result
    of the model: 1.7-2.6 s measured with 1,000,000 rows of other advertisers)."""
    heads = Q()
    for task, head in active.heads.items():
        heads |= Q(model_version_id=head.model_version_id, task=task)
    rows = (
        Classification.objects.filter(heads, done, asset_id=OuterRef("pk"))
        .order_by()
        .annotate(n=Func(F("pk"), function="COUNT"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def needs_classification(asset_ids: Any, active: ActiveModels, *, since: Any = None) -> Q:
    """A filter on ImageAsset for assets missing a result of some active head: no row, or a failure older
    than `since` (a failure is tried again once per Run). Costs one index probe per asset of `asset_ids`."""
    if not active.heads:
        return Q(pk__in=[])
    done = Q(status=Classification.Status.OK)
    if since:
        done |= Q(updated_at__gte=since)
    return Q(id__in=asset_ids) & Q(LessThan(heads_done(active, done), len(active.heads)))

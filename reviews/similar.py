"""More like this: the live images of a sitemap or an advertiser most like one image, by the cached penultimate
features (classifier.models.FeatureVector) of the active image_type model, so that a dealer's whole photo-booth
series is one bulk retag on the grid (GridFilters.similar_to).

Similarity is the cosine of L2-normalised features, computed by brute force: one [N, D] float32 matrix per scope
and process, times the query vector, then a partial sort. At 100,000 images of 512 features the matrix is 200 MB
and a query a few milliseconds (`manage.py benchmark_similar`; README "More like this"). The matrix is loaded from
the database once and kept while the scope's live images and the version's cached vectors stay the same: each query
checks that with two aggregate queries and reloads only when they changed.

Only images whose features are cached are candidates: `manage.py compute_features --sitemap ID` fills the cache
for a scope (the grid says "n of N images indexed"). The query image's own features are computed when missing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Max, QuerySet, Sum

from catalog.models import Placement, Sitemap, Task
from classifier.models import FeatureVector, ModelHead, ModelVersion
from core.errors import ApplicationError

from .models import EffectiveTag

SCOPES = ("sitemap", "advertiser")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_QUERIES = 50  # images of one query: a grid selection's "more like these"
TASK = Task.IMAGE_TYPE  # the features of the model that tells a dealer's photo from stock: its embedding
CACHED_SCOPES = 4  # matrices kept per process (at 100,000 images, 200 MB each)


class SimilarError(ApplicationError):
    """Similar images cannot be found (no active model, an image that is not in the scope); one line says why."""

    code = "similar_refused"


class SimilarNotFound(SimilarError):
    code = "similar_not_found"
    http_status = 404


class SimilarUnavailable(SimilarError):
    """What is asked is well formed, but the models cannot answer it now (none active, no features of an image): a
    state to change, not a request to correct."""

    code = "similar_unavailable"
    http_status = 409


@dataclass(frozen=True)
class SimilarImages:
    """The `matches` (placement id, cosine similarity to the nearest of the images asked about), most similar first,
    the images asked about included (1.0); the scope's `total` live images of which `indexed` have cached features
    (the only candidates). `placement_id`: the first image asked about; `asked`: all of them."""

    placement_id: int
    scope: str
    matches: list[tuple[int, float]]
    indexed: int
    total: int
    asked: tuple[int, ...] = ()

    @property
    def placement_ids(self) -> list[int]:
        return [placement_id for placement_id, _ in self.matches]


@dataclass(frozen=True)
class _Index:
    signature: tuple[object, ...]
    placement_ids: np.ndarray  # int64 [n]
    matrix: np.ndarray  # float32 [n, D], rows L2-normalised
    total: int


_indexes: OrderedDict[tuple[str, int, int, str], _Index] = OrderedDict()
_lock = threading.Lock()


def forget_indexes() -> None:
    """Drops the matrices this process holds."""
    with _lock:
        _indexes.clear()


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def top_matches(matrix: np.ndarray, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indexes, cosines) of the `limit` rows of the normalised `matrix` most like the normalised `query` (one
    vector, or several rows: a row's score is then its cosine to the nearest of them), best first; ties by row
    order. Brute force: one matrix product and a partial sort."""
    scores = matrix @ query if query.ndim == 1 else (matrix @ query.T).max(axis=1)
    candidates = np.argpartition(-scores, limit - 1)[:limit] if limit < len(scores) else np.arange(len(scores))
    order = candidates[np.lexsort((candidates, -scores[candidates]))]
    return order, scores[order]


def similarity_head() -> ModelHead:
    """The active image_type head: its version's cached features are what similarity compares."""
    head = ModelHead.objects.select_related("model_version").filter(is_active=True, task=TASK).first()
    if head is None:
        raise SimilarUnavailable("no image_type model is active: activate one to find similar images")
    return head


def _feature_tensor(version: ModelVersion, head: ModelHead) -> str:
    from classifier.services.features import extractor_for

    return extractor_for(version=version, output=head.output).head.features


def scope_rows(*, placement: Placement, scope: str) -> tuple[str, int, QuerySet[EffectiveTag]]:
    """(scope, id, the scope's live stored rows): the placement's sitemap, or its advertiser's every sitemap."""
    if scope not in SCOPES:
        raise SimilarError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    sitemap = placement.listing.sitemap
    rows = EffectiveTag.objects.filter(task=TASK, live=True)
    if scope == "sitemap":
        return scope, sitemap.pk, rows.filter(sitemap_id=sitemap.pk)
    return scope, sitemap.advertiser_id, rows.filter(sitemap__advertiser_id=sitemap.advertiser_id)


def _signature(rows: QuerySet[EffectiveTag], version: ModelVersion) -> tuple[object, ...]:
    # The live images (count, sum and largest id change when one comes or goes) and the version's newest vector.
    live = rows.aggregate(n=Count("placement_id"), top=Max("placement_id"), sum=Sum("placement_id"))
    newest = FeatureVector.objects.filter(model_version=version).aggregate(top=Max("id"))["top"]
    return (live["n"], live["top"], live["sum"], newest)


def _load(rows: QuerySet[EffectiveTag], version: ModelVersion, tensor: str, signature: tuple[object, ...]) -> _Index:
    live = signature[0]
    assert isinstance(live, int)  # noqa: S101 - a count
    pairs = list(rows.filter(asset_id__isnull=False).values_list("placement_id", "asset_id"))
    vectors: dict[int, bytes | memoryview] = dict(
        FeatureVector.objects.filter(
            model_version=version, tensor=tensor, asset_id__in=rows.values("asset_id")
        ).values_list("asset_id", "data")
    )
    indexed = [(placement_id, asset_id) for placement_id, asset_id in pairs if asset_id in vectors]
    if indexed:
        raw = np.stack([np.frombuffer(bytes(vectors[asset_id]), dtype="<f4") for _, asset_id in indexed])
        matrix = normalise(raw)
    else:
        matrix = np.zeros((0, 0), dtype=np.float32)
    ids = np.fromiter((placement_id for placement_id, _ in indexed), dtype=np.int64, count=len(indexed))
    return _Index(signature=signature, placement_ids=ids, matrix=matrix, total=int(live))


def _index(rows: QuerySet[EffectiveTag], key: tuple[str, int, int, str], version: ModelVersion, tensor: str) -> _Index:
    signature = _signature(rows, version)
    with _lock:
        index = _indexes.get(key)
        if index is not None and index.signature == signature:
            _indexes.move_to_end(key)
            return index
    index = _load(rows, version, tensor, signature)
    with _lock:
        _indexes[key] = index
        _indexes.move_to_end(key)
        while len(_indexes) > CACHED_SCOPES:
            _indexes.popitem(last=False)
    return index


def similar_images(
    *, placement: Placement, scope: str = "sitemap", limit: int = DEFAULT_LIMIT, also: Sequence[Placement] = ()
) -> SimilarImages:
    """The `limit` live images of the placement's sitemap (or advertiser) most like it (or, with `also`, most like
    the nearest of it and those: a grid selection) by the cosine of the active image_type version's cached features,
    the images asked about first. Images without cached features are not candidates; the features of the images
    asked about are computed (and cached) when missing. Raises SimilarError (no active model, a scope, limit or
    number of images out of range, an image whose original cannot be read) or SimilarNotFound (an image is not
    live in the scope)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise SimilarError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    asked = list(dict.fromkeys([placement, *also]))
    if len(asked) > MAX_QUERIES:
        raise SimilarError(f"at most {MAX_QUERIES} images at once, not {len(asked)}")
    head = similarity_head()
    version = head.model_version
    tensor = _feature_tensor(version, head)
    name, scope_id, rows = scope_rows(placement=placement, scope=scope)
    live = set(rows.filter(placement_id__in=[each.pk for each in asked]).values_list("placement_id", flat=True))
    for each in asked:
        if each.asset_id is None or each.pk not in live:
            raise SimilarNotFound(f"image {each.pk} is not a live image of its sitemap: nothing is like it")
    from classifier.services.features import FeatureError, asset_features

    try:
        query = normalise(asset_features(version=version, task=TASK, asset_ids=[each.asset_id or 0 for each in asked]))
    except FeatureError as exc:
        raise SimilarUnavailable(f"image {placement.pk}: {exc}") from exc
    ids = tuple(each.pk for each in asked)
    index = _index(rows, (name, scope_id, version.pk, tensor), version, tensor)
    if not len(index.placement_ids):
        return SimilarImages(placement.pk, name, [], indexed=0, total=index.total, asked=ids)
    order, scores = top_matches(index.matrix, query[0] if len(query) == 1 else query, limit)
    matches = [
        (int(index.placement_ids[row]), round(float(score), 4)) for row, score in zip(order, scores, strict=True)
    ]
    # The images asked about first, whatever rounding says of their twins (the same picture in other listings).
    first = {placement_id: k for k, placement_id in enumerate(ids)}
    matches.sort(key=lambda match: (first.get(match[0], len(ids)), -match[1]))
    return SimilarImages(placement.pk, name, matches, indexed=len(index.placement_ids), total=index.total, asked=ids)


def similar_in_sitemap(*, sitemap: Sitemap, placement_ids: Sequence[int], limit: int = DEFAULT_LIMIT) -> SimilarImages:
    """`similar_images` of the sitemap's placements `placement_ids` (the grid's filter): SimilarNotFound when an id is
    not one of this sitemap's images, so a filter never reaches another sitemap's or advertiser's images."""
    found = Placement.objects.select_related("listing__sitemap").in_bulk(list(placement_ids))
    for placement_id in placement_ids:
        if placement_id not in found or found[placement_id].listing.sitemap_id != sitemap.pk:
            raise SimilarNotFound(f"image {placement_id} is not an image of this sitemap")
    if not placement_ids:
        raise SimilarError("no image asked about")
    first, *rest = (found[placement_id] for placement_id in placement_ids)
    return similar_images(placement=first, scope="sitemap", limit=limit, also=rest)

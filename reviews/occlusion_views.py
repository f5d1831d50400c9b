"""The image page's "Where does the model look?": request an occlusion map (POST) and follow it (GET), as an htmx
partial that polls itself while the map is computed. Staff see every image; the portal its own images only. Asking
for a map writes one and queues work on the inference queue: staff and editors ask, a viewer follows a map."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_http_methods

from catalog.models import Placement
from classifier.models import OcclusionMap
from classifier.services.occlusion import OcclusionError, occlusion_request_for_placement

from .guards import staff_required
from .views import PORTAL, STAFF, HtmxHttpRequest, Realm


def overlay_styles(grid: dict[str, Any]) -> dict[str, str]:
    """CSS that shows only the crop the model saw: a box with the crop's aspect ratio, the full picture shifted
    and scaled inside it, and the heatmap stretched over the box (it is drawn over the crop exactly)."""
    x0, y0, x1, y1 = (int(value) for value in grid["crop"])
    width = int(grid["image_size"][0])
    crop_w, crop_h = max(1, x1 - x0), max(1, y1 - y0)
    return {
        "box": f"position:relative;overflow:hidden;width:100%;max-width:480px;aspect-ratio:{crop_w}/{crop_h}",
        "picture": (
            f"position:absolute;display:block;max-width:none;height:auto;width:{100 * width / crop_w:.3f}%;"
            f"left:{-100 * x0 / crop_w:.3f}%;top:{-100 * y0 / crop_h:.3f}%"
        ),
        "heatmap": "position:absolute;left:0;top:0;width:100%;height:100%;opacity:0.75;pointer-events:none",
    }


def _render(
    request: HtmxHttpRequest,
    realm: Realm,
    placement: Placement,
    row: OcclusionMap | None = None,
    error: str = "",
) -> HttpResponse:
    context: dict[str, object] = {"placement": placement, "map": row, "error": error, "realm": realm,
                                  "url": realm.url("occlusion", placement.pk)}  # fmt: skip
    if row is not None and row.status == OcclusionMap.Status.DONE and row.grid:
        context["styles"] = overlay_styles(row.grid)
    # htmx swaps 2xx responses only: the error is shown in place; other clients get a 400 with the same text.
    status = 400 if error and not request.htmx else 200
    return render(request, "reviews/_partials/occlusion.html", context, status=status)


def _occlusion(request: HtmxHttpRequest, realm: Realm, placement_id: int) -> HttpResponse:
    placement = get_object_or_404(realm.placements(request), pk=placement_id)
    if request.method == "POST":
        if not realm.can_edit(request, placement.listing.sitemap):
            raise PermissionDenied("a viewer cannot ask for an occlusion map: an editor of the advertiser can")
        try:
            row = occlusion_request_for_placement(
                placement=placement, task=request.POST.get("task", ""), label=request.POST.get("label") or None
            )
        except OcclusionError as exc:
            return _render(request, realm, placement, error=str(exc))
        return _render(request, realm, placement, row)
    map_id = request.GET.get("map", "")
    row = get_object_or_404(
        OcclusionMap, pk=int(map_id) if map_id.isdigit() else 0, asset_id=placement.asset_id or 0
    )  # only a map of this placement's picture
    return _render(request, realm, placement, row)


@staff_required
@require_http_methods(["GET", "POST"])
def staff_occlusion(request: HtmxHttpRequest, placement_id: int) -> HttpResponse:
    return _occlusion(request, STAFF, placement_id)


@login_required
@require_http_methods(["GET", "POST"])
def portal_occlusion(request: HtmxHttpRequest, placement_id: int) -> HttpResponse:
    return _occlusion(request, PORTAL, placement_id)

"""The advertiser portal's home (what needs the advertiser's attention, staff decisions on their labels, the image
types explained with their own pictures) and the portal's pictures, served by image within the portal's scope.

The portal shows no internals: a picture's stored names hold its SHA-256, so portal pages link pictures by image
(placement) here rather than by stored name (reviews.media_views, which staff pages use).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from classifier.models import OcclusionMap

from .media_views import stored_file_response
from .portal_selectors import portal_home as portal_home_read
from .views import PORTAL, HtmxHttpRequest

# What each image type means, for advertisers (DESIGN.md's vocabulary), beside an example from their own inventory.
IMAGE_TYPES_EXPLAINED = {
    "Dealer": "A photo of the vehicle itself, taken by the dealer: on the lot, in the showroom, on the road.",
    "Stock": "A computer-generated or manufacturer's image of the model, usually on a plain white background: "
    "not a photo of this very vehicle.",
    "Placeholder": 'No vehicle to show: an "image coming soon" graphic, a logo or a banner. A placeholder has no '
    "color.",
}
PICTURES = ("thumbnail", "original")


@login_required
@require_safe
def portal_home(request: HtmxHttpRequest) -> HttpResponse:
    sitemaps = PORTAL.sitemaps(request).order_by("advertiser__name", "id")
    home = portal_home_read(sitemaps=sitemaps)
    explained = [(example, IMAGE_TYPES_EXPLAINED.get(example.label, "")) for example in home.examples]
    advertisers = {row.sitemap.advertiser_id for row in home.attention}
    return render(
        request,
        "reviews/portal_home.html",
        {"realm": PORTAL, "home": home, "explained": explained, "several_advertisers": len(advertisers) > 1},
    )


@login_required
@require_safe
def portal_picture(request: HtmxHttpRequest, placement_id: int, kind: str) -> HttpResponseBase:
    """An image's thumbnail or original, when the image is in the viewer's portal (404 otherwise, as if it did not
    exist)."""
    if kind not in PICTURES:
        raise Http404("no such picture")
    placement = get_object_or_404(PORTAL.placements(request).filter(asset__isnull=False), pk=placement_id)
    asset = placement.asset
    assert asset is not None  # noqa: S101 - filtered above
    stored = asset.thumbnail if kind == "thumbnail" else asset.original
    if not stored.name:
        raise Http404("no such picture")
    return stored_file_response(stored.name)


@login_required
@require_safe
def portal_heatmap(request: HtmxHttpRequest, placement_id: int) -> HttpResponseBase:
    """The heatmap of a finished occlusion map (`?map=<id>`) of an image in the viewer's portal."""
    placement = get_object_or_404(PORTAL.placements(request), pk=placement_id)
    map_id = request.GET.get("map", "")
    row = get_object_or_404(
        OcclusionMap, pk=int(map_id) if map_id.isdigit() else 0, asset_id=placement.asset_id or 0
    )  # only a map of this image's picture
    if not row.heatmap.name:
        raise Http404("no heatmap yet")
    return stored_file_response(row.heatmap.name)

"""Template tags of the cross-image reviews: the grid card's cluster badge, and a picture's usage on the image page."""

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from catalog.models import Placement
from reviews.crosscheck import picture_of, picture_usage
from reviews.grid import GridItem

from .reviews_tags import grid_card

register = template.Library()


@register.simple_tag
def cluster_card(item: GridItem, task: str, realm: str) -> SafeString:
    """The grid's card (reviews_tags.grid_card), with a badge linking to its cluster when the sitemap shows the
    same picture (or a near-duplicate) two times or more."""
    card = grid_card(item, task, realm)
    asset = item.placement.asset
    if item.cluster_size < 2 or asset is None or not card.endswith("</div>"):
        return card
    sitemap_id = item.placement.listing.sitemap_id
    query = urlencode({"cluster": str(picture_of(asset)), "task": task})
    url = f"{reverse(f'reviews:{realm}-clusters', args=[sitemap_id])}?{query}"
    badge = format_html(
        '<a class="cluster-badge" href="{}" title="{} images of this sitemap show this picture or a near-duplicate:'
        ' review them as one">&times;{}</a>',
        url,
        item.cluster_size,
        item.cluster_size,
    )
    # The card's last child: before the closing tag of the card (both parts are escaped HTML already).
    return mark_safe(f"{card[: -len('</div>')]}{badge}</div>")  # noqa: S308


@register.simple_tag
def picture_usage_line(placement: Placement, realm: str) -> str:
    """'appears in 37 listings of 4 advertisers' (staff), 'appears in 12 of your listings' (the portal)."""
    if placement.asset is None:
        return ""
    if realm == "staff":
        listings, advertisers = picture_usage(asset=placement.asset)
        return format_html(
            '<p class="picture-usage">This picture (or a near-duplicate) appears in <strong>{} listing{}</strong>'
            " of {} advertiser{}.</p>",
            listings,
            "" if listings == 1 else "s",
            advertisers,
            "" if advertisers == 1 else "s",
        )
    listings, _ = picture_usage(asset=placement.asset, advertiser_id=placement.listing.sitemap.advertiser_id)
    return format_html(
        '<p class="picture-usage">This picture (or a near-duplicate) appears in'
        " <strong>{} of your listings</strong>.</p>",
        listings,
    )

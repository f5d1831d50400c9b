"""Writes to the catalog. Callers import from here; the modules below are an implementation detail."""

from .catalog import advertiser_get_or_create, membership_grant, sitemap_get_or_create
from .clusters import assets_cluster, clusters_rebuild, run_assets_cluster

__all__ = [
    "advertiser_get_or_create",
    "assets_cluster",
    "clusters_rebuild",
    "membership_grant",
    "run_assets_cluster",
    "sitemap_get_or_create",
]

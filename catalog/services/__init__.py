"""Writes to the catalog. Callers import from here; the modules below are an implementation detail."""

from .catalog import advertiser_get_or_create, sitemap_get_or_create

__all__ = ["advertiser_get_or_create", "sitemap_get_or_create"]

import os
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate

# The migration that gave assets their color signature: the clusters are rebuilt under the new rule once it ran.
COLOR_SIGNATURE_MIGRATION = ("catalog", "0008_asset_color_signature")


class CatalogConfig(AppConfig):
    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from catalog.services.assets import storage_forget_connections

        # Run pools and Celery's prefork children: each opens its own storage connections.
        os.register_at_fork(after_in_child=storage_forget_connections)
        post_migrate.connect(clusters_rebuild_after_migration, sender=self, dispatch_uid="catalog.clusters.migrated")


def clusters_rebuild_after_migration(sender: AppConfig, *, plan: Any = None, **kwargs: object) -> None:
    """Rebuilds the near-duplicate clusters (as `manage.py rebuild_clusters`) when this migrate applied
    COLOR_SIGNATURE_MIGRATION: clusters made by pHash alone join the same render in other paints. Through the
    service, so that the reviews' stored tags (their picture) follow."""
    applied = {(migration.app_label, migration.name) for migration, backwards in plan or () if not backwards}
    if COLOR_SIGNATURE_MIGRATION not in applied:
        return
    from catalog.services.clusters import clusters_rebuild

    clusters_rebuild()

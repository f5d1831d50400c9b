import os

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from catalog.services.assets import storage_forget_connections

        # Run pools and Celery's prefork children: each opens its own storage connections.
        os.register_at_fork(after_in_child=storage_forget_connections)

from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The stored effective tags follow what they depend on (reviews.effective_store), in the writer's transaction.
        from catalog.signals import clusters_changed, listings_synced, placements_changed
        from classifier.services.promotion import regression_source_register
        from classifier.signals import classifications_written, heads_switched

        from . import comparison, effective_store

        # Every promotion (screens, command, admin) refuses a version that flips other advertisers' confident tags.
        regression_source_register("reviews.confident_flips", comparison.confident_flip_regressions)

        placements_changed.connect(effective_store.on_placements_changed, dispatch_uid="reviews.store.placements")
        listings_synced.connect(effective_store.on_listings_synced, dispatch_uid="reviews.store.synced")
        clusters_changed.connect(effective_store.on_clusters_changed, dispatch_uid="reviews.store.clusters")
        classifications_written.connect(
            effective_store.on_classifications_written, dispatch_uid="reviews.store.classifications"
        )
        heads_switched.connect(effective_store.on_heads_switched, dispatch_uid="reviews.store.heads")

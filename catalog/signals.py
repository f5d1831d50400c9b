"""Signals of the catalog: what changed on a placement or a listing, for apps that keep something derived from
them (reviews keeps each placement's effective tag where the database can index it).

They are sent inside the writer's transaction, after the write, so a receiver's own writes commit or roll back
with it. The catalog never imports those apps: the receivers register themselves (in their AppConfig.ready).
"""

from django.dispatch import Signal

#: A placement's image (asset) or status changed. Keywords: placement_ids (list[int]); asset_ids (list[int], may be
#: empty): assets whose results were stored with them, so every placement showing them changed too.
placements_changed = Signal()

#: A sync of the sitemap wrote its listings (their attributes, e.g. the scrape's color, may have changed) and
#: marked placements and listings gone or live again. Keyword: sitemap_id (int).
listings_synced = Signal()

#: Near-duplicate clusters changed (catalog.services.clusters): these assets got a cluster, and the members of
#: these clusters (their new roots) moved into them. Keywords: asset_ids (list[int]), cluster_ids (list[int]).
clusters_changed = Signal()

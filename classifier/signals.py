"""Signals of the classifier, for apps that keep something derived from model results (reviews keeps each
placement's effective tag where the database can index it). Sent inside the writer's transaction, after the
write; the classifier never imports the receivers.
"""

from django.dispatch import Signal

#: Results (ok or failed) of the assets were written. Keyword: asset_ids (list[int]).
classifications_written = Signal()

#: The active model of the tasks changed (an activation, a promotion, a rollback). Keyword: tasks (list[str]); and
#: advertiser_id (int) when only that advertiser's scoped head changed (classifier.services.scoped).
heads_switched = Signal()

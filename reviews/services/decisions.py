"""Decisions of the review queue, and their undo.

A decision (reviews.services.fixes.review_decision_record) is one fix in a ChangeSet of kind "decision". Undoing it
puts back what was in effect before (reviews.services.change_sets.change_set_undo: a fix back to the fix in effect
then, or a withdrawal where the model's tag was: history stays append-only), and the review queue reads the scope
without the undone decision, so the question comes back as it was asked. A confirmation is undone too: it settled the
scope, or made the model's tag a human label.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from reviews.models import ChangeSet, ManualFix

from .change_sets import UndoResult, change_set_undo
from .fixes import FixError


def last_decision(*, user: User) -> ChangeSet | None:
    """The user's latest decision in the review queue that is not undone yet (what the queue's undo key undoes)."""
    return (
        ChangeSet.objects.filter(kind=ChangeSet.Kind.DECISION, user=user, undone_by__isnull=True)
        .order_by("-created_at", "-id")
        .first()
    )


@transaction.atomic
def review_decision_undo(*, change_set: ChangeSet, user: User | None) -> UndoResult:
    """Undoes one decision of the review queue: what was in effect before it comes back (a staff fix back to the
    earlier fix, or a withdrawal: the model's tag again), and the question comes back to the queue. FixError when the
    change set is no decision, was undone already, or its scope was fixed again since (then nothing is written)."""
    locked = ChangeSet.objects.select_for_update().get(pk=change_set.pk)
    if locked.kind != ChangeSet.Kind.DECISION:
        raise FixError(f"change set {locked.pk} is a {locked.get_kind_display().lower()}, not a review decision")
    return change_set_undo(change_set=locked, user=user, source=ManualFix.Source.STAFF)

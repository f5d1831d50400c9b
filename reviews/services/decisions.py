"""Decisions of the review queue, and their undo.

A decision (reviews.services.fixes.review_decision_record) is one fix in a ChangeSet of kind "decision". Undoing it
writes its label back (reviews.services.change_sets.change_set_undo: a new fix, history stays append-only), and the
review queue reads the scope without the undone decision, so the question comes back as it was asked. A decision that
kept the label in effect (a confirmation) changed no label: its undo writes no fix, only the undo's change set.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from reviews.models import ChangeSet, ManualFix

from .change_sets import UndoResult, change_set_undo, change_set_undo_record
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
    """Undoes one decision of the review queue: the label it set goes back to the one it replaced (a staff fix that
    reverts it), and the question comes back to the queue. FixError when the change set is no decision, was undone
    already, or its scope was fixed again since (then nothing is written)."""
    locked = ChangeSet.objects.select_for_update().get(pk=change_set.pk)
    if locked.kind != ChangeSet.Kind.DECISION:
        raise FixError(f"change set {locked.pk} is a {locked.get_kind_display().lower()}, not a review decision")
    fix = locked.fix_rows.order_by("id").first()
    if fix is None or not fix.is_confirmation:
        return change_set_undo(change_set=locked, user=user, source=ManualFix.Source.STAFF)
    undo = change_set_undo_record(locked, user=user, fixes=0)  # nothing to write: the accept left no label change
    return UndoResult(change_set=undo, written=0, confirmations=1)

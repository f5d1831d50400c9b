"""Change sets: one reviewer action that wrote fixes (a save of the grid, a bulk retag, a queue decision), kept so
that the action can be undone as a whole.

History stays append-only: an undo deletes nothing. For each fix of the set that is still the latest row of its
scope, it writes a row that puts back what was in effect before the set (reviews.services.fixes.fix_back): a fix back
to the fix in effect then, or, where none was (the model's tag, the scrape's color, unknown), a withdrawal: no fix in
effect, so a mistaken save that was undone is no human label (not reviewed, not exported). It records those rows as a
change set of its own (kind "undo", pointing at the set it undid). A set is undone once (ChangeSet.undoes is
one-to-one). The portal undoes only the change sets made in the portal (change_set_undoable).

The two reads that the screens need (which change sets a user may see, and how they are listed) live here too, beside
the writes, because they share the one visibility rule: staff see every advertiser's, a portal user their own
advertisers' only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, QuerySet

from catalog.models import Sitemap
from reviews.models import ChangeSet, ManualFix
from reviews.selectors import user_can_fix

from .fixes import Change, FixError, fix_back, fixes_record, manual_fixes_apply, row_before, scope_histories, scope_of

SUMMARY_LENGTH = 300


@transaction.atomic
def change_set_apply(
    *,
    kind: str,
    advertiser_id: int,
    changes: Iterable[Change],
    confirmations: Iterable[Change] = (),
    user: User | None,
    source: str,
    summary: str = "",
    note: str = "",
) -> ChangeSet | None:
    """Records one reviewer action (a grid save or a bulk retag) as a ChangeSet and its fixes, in one transaction:
    the changes (a fix where the label differs from the one in effect) and the confirmations (the label in effect,
    kept: a human looked and agreed; manual_fixes_apply(confirm=True)). A confirmation of a tag that the same action
    also changes is left out. Every placement must belong to the advertiser, else FixError.

    Returns None, and records nothing, when the action changed and confirmed nothing.
    """
    changes, confirmations = list(changes), list(confirmations)
    everything = [*changes, *confirmations]
    foreign = sorted({c.placement.pk for c in everything if c.placement.listing.sitemap.advertiser_id != advertiser_id})
    if foreign:
        raise FixError(f"images {foreign} are not the advertiser's: a change set belongs to one advertiser")
    change_set = ChangeSet.objects.create(
        kind=kind, advertiser_id=advertiser_id, user=user, source=source, summary=summary[:SUMMARY_LENGTH]
    )
    created = list(manual_fixes_apply(changes=changes, user=user, source=source, note=note, change_set=change_set))
    changed = {(fix.asset_id, fix.task) for fix in created}
    confirmations = [c for c in confirmations if (c.placement.asset_id, c.task) not in changed]
    if confirmations:
        created += manual_fixes_apply(
            changes=confirmations, user=user, source=source, note=note, confirm=True, change_set=change_set
        )
    if not created:
        change_set.delete()  # nothing refers to it: the action wrote nothing
        return None
    change_set.fixes = len(created)
    change_set.save(update_fields=["fixes"])
    return change_set


@dataclass(frozen=True)
class UndoResult:
    """What an undo wrote (its own change set) and what it left, by reason."""

    change_set: ChangeSet
    written: int
    withdrawn: int = 0  # of those written: withdrawals (no fix was in effect before: the model's tag again)
    changed_since: int = 0  # scopes that someone fixed after the set
    confirmations: int = 0  # confirmations of a fix in effect changed nothing: there is nothing to put back

    @property
    def skipped(self) -> int:
        return self.changed_since + self.confirmations

    def message(self) -> str:
        text = f"Change set {self.change_set.undoes_id} undone: {self.written} tag{_s(self.written)} set back"
        if self.withdrawn:
            text += f" ({self.withdrawn} with no fix any more: the model's or the scrape's tag)"
        skipped = _skipped_reasons({"changed_since": self.changed_since, "confirmations": self.confirmations})
        return f"{text}; {self.skipped} skipped ({skipped})" if skipped else text


def change_set_undo_record(locked: ChangeSet, *, user: User | None, source: str, fixes: int) -> ChangeSet:
    """Records the change set (kind "undo") that undoes `locked` (locked by the caller). FixError when it was undone
    already: ChangeSet.undoes is one-to-one, so two undos racing past the lock cannot both land."""
    undo = ChangeSet(
        kind=ChangeSet.Kind.UNDO, advertiser_id=locked.advertiser_id, user=user, source=source, fixes=fixes,
        undoes=locked, summary=f"undo of change set {locked.pk}: {locked.summary}"[:SUMMARY_LENGTH],
    )  # fmt: skip
    try:
        with transaction.atomic():
            undo.save()
    except IntegrityError as exc:
        raise FixError(f"change set {locked.pk} was undone already") from exc
    return undo


@transaction.atomic
def change_set_undo(*, change_set: ChangeSet, user: User | None, source: str) -> UndoResult:
    """Undoes a change set in one transaction: for each of its fixes that is still the latest row of its scope
    (advertiser, asset, task), a new row that puts back what was in effect before it (fix_back, `reverts` the fix): a
    fix back to the fix in effect then, or a withdrawal where none was (the model's tag again, not reviewed). Scopes
    that someone fixed since are skipped and counted, as are confirmations of a fix in effect (they changed nothing;
    a decision's confirmation settled a conflict, which its undo takes back). The new rows form a change set of kind
    "undo" that `undoes` this one. A set is undone once; FixError when it was, or when nothing of it can be set back
    (then nothing is recorded and it stays undoable)."""
    locked = ChangeSet.objects.select_for_update().get(pk=change_set.pk)  # two undos of one set: one waits
    done = ChangeSet.objects.filter(undoes=locked).first()
    if done is not None:
        raise FixError(f"change set {locked.pk} was undone already (change set {done.pk})")
    fixes = list(locked.fix_rows.order_by("id"))
    histories = scope_histories(fixes)
    counts = {"changed_since": 0, "confirmations": 0}
    back: list[tuple[ManualFix, ManualFix | None]] = []  # a fix and the row before it
    for fix in fixes:
        history = histories[scope_of(fix)]
        before = row_before(fix, history)
        if history[0].pk != fix.pk:
            counts["changed_since"] += 1
        elif fix.is_confirmation and not fix.settles and before is not None and before.label_in_effect is not None:
            counts["confirmations"] += 1
        else:
            back.append((fix, before))
    if not back:
        reasons = _skipped_reasons(counts) or "it wrote no fix"
        raise FixError(f"nothing of change set {locked.pk} can be set back: {reasons}")
    undo = change_set_undo_record(locked, user=user, source=source, fixes=len(back))
    note = f"undo of change set {locked.pk}"
    rows = fixes_record(
        [fix_back(fix, before, user=user, source=source, note=note, change_set=undo) for fix, before in back]
    )
    withdrawn = sum(row.withdraws for row in rows)
    return UndoResult(change_set=undo, written=len(rows), withdrawn=withdrawn, **counts)


def change_sets_undo_allowed(
    user: User | AnonymousUser, change_sets: Iterable[ChangeSet], *, portal: bool
) -> dict[int, bool]:
    """Change set id -> whether the user may undo it (of those they may see, change_sets_visible_to): they may fix the
    advertiser's tags, and, in the portal, it was made in the portal: a staff save, bulk retag or decision is not the
    advertiser's to undo (the portal lists them, without Undo). One permission check per advertiser."""
    change_sets = list(change_sets)
    editable = {pk: user_can_fix(user, pk) for pk in {change_set.advertiser_id for change_set in change_sets}}
    return {
        change_set.pk: editable[change_set.advertiser_id]
        and (not portal or change_set.source == ManualFix.Source.ADVERTISER)
        for change_set in change_sets
    }


def _skipped_reasons(counts: dict[str, int]) -> str:
    """ "1 changed by someone since, 2 confirmations, which changed no label" (the reasons with a count)."""
    words = {
        "changed_since": lambda n: f"{n} changed by someone since",
        "confirmations": lambda n: f"{n} confirmation{_s(n)}, which changed no label",
    }
    return ", ".join(words[key](n) for key, n in counts.items() if n)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


# Reads


def change_sets_visible_to(user: User | AnonymousUser, *, portal: bool = False) -> QuerySet[ChangeSet]:
    """Change sets the user may see: staff every advertiser's (on the staff screens), anyone else (and staff in the
    portal) those of the advertisers they are a member of, less the staff review queue's decisions (and their undos),
    which are staff's own work. Newest first, with what a list shows."""
    queryset = ChangeSet.objects.select_related("user", "advertiser", "undoes", "undone_by", "undone_by__user")
    if not (user.is_authenticated and user.is_active):
        return queryset.none()
    if portal or not user.is_staff:
        decision = ChangeSet.Kind.DECISION
        queryset = (
            queryset.filter(advertiser__memberships__user=user).exclude(kind=decision).exclude(undoes__kind=decision)
        )
    return queryset.order_by("-created_at", "-id")


def change_sets_of_sitemap(queryset: QuerySet[ChangeSet], *, sitemap: Sitemap) -> QuerySet[ChangeSet]:
    """Those of the change sets whose fixes touched a picture shown in the sitemap (a change set names its
    advertiser, not the screen it came from)."""
    touched = ManualFix.objects.filter(change_set_id=OuterRef("pk"), asset__placements__listing__sitemap=sitemap)
    return queryset.filter(advertiser_id=sitemap.advertiser_id).filter(Exists(touched))

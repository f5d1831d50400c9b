"""Change sets: one reviewer action that wrote fixes (a save of the grid, a bulk retag, a queue decision), kept so
that the action can be undone as a whole.

History stays append-only: an undo deletes nothing. It writes, for each fix of the set whose scope still holds that
fix's label, a new fix back to the label it replaced, and records those fixes as a change set of its own (kind
"undo", pointing at the set it undid). A set is undone once (ChangeSet.undoes is one-to-one).

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

from .fixes import Change, FixError, fix_back, fixes_record, manual_fixes_apply

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
        kind=kind, advertiser_id=advertiser_id, user=user, summary=summary[:SUMMARY_LENGTH]
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
    changed_since: int = 0  # scopes whose label someone changed after the set
    confirmations: int = 0  # confirmations changed no label: there is nothing to write back
    no_label: int = 0  # the fix replaced no label (the model had none): there is no label to go back to

    @property
    def skipped(self) -> int:
        return self.changed_since + self.confirmations + self.no_label

    def message(self) -> str:
        text = f"Change set {self.change_set.undoes_id} undone: {self.written} tag{_s(self.written)} set back"
        skipped = _skipped_reasons(
            {"changed_since": self.changed_since, "confirmations": self.confirmations, "no_label": self.no_label}
        )
        return f"{text}; {self.skipped} skipped ({skipped})" if skipped else text


def change_set_undo_record(locked: ChangeSet, *, user: User | None, fixes: int) -> ChangeSet:
    """Records the change set (kind "undo") that undoes `locked` (locked by the caller). FixError when it was undone
    already: ChangeSet.undoes is one-to-one, so two undos racing past the lock cannot both land."""
    undo = ChangeSet(
        kind=ChangeSet.Kind.UNDO, advertiser_id=locked.advertiser_id, user=user, fixes=fixes, undoes=locked,
        summary=f"undo of change set {locked.pk}: {locked.summary}"[:SUMMARY_LENGTH],
    )  # fmt: skip
    try:
        with transaction.atomic():
            undo.save()
    except IntegrityError as exc:
        raise FixError(f"change set {locked.pk} was undone already") from exc
    return undo


@transaction.atomic
def change_set_undo(*, change_set: ChangeSet, user: User | None, source: str) -> UndoResult:
    """Undoes a change set in one transaction: for each of its fixes whose scope (advertiser, asset, task) still
    holds that fix's label, a new fix back to the label it replaced (`reverts` the fix). Scopes that someone changed
    since are skipped and counted, as are confirmations and fixes that replaced no label. The new fixes form a change
    set of kind "undo" that `undoes` this one. A set is undone once; FixError when it was, or when nothing of it can
    be set back (then nothing is recorded and it stays undoable)."""
    locked = ChangeSet.objects.select_for_update().get(pk=change_set.pk)  # two undos of one set: one waits
    done = ChangeSet.objects.filter(undoes=locked).first()
    if done is not None:
        raise FixError(f"change set {locked.pk} was undone already (change set {done.pk})")
    fixes = list(locked.fix_rows.order_by("id"))
    holding = _latest_labels(fixes)
    counts = {"changed_since": 0, "confirmations": 0, "no_label": 0}
    back: list[ManualFix] = []
    for fix in fixes:
        if fix.is_confirmation:
            counts["confirmations"] += 1
        elif not fix.old_label:
            counts["no_label"] += 1
        elif holding.get((fix.advertiser_id, fix.asset_id, fix.task), "").lower() != fix.new_label.lower():
            counts["changed_since"] += 1
        else:
            back.append(fix)
    if not back:
        reasons = _skipped_reasons(counts) or "it wrote no fix"
        raise FixError(f"nothing of change set {locked.pk} can be set back: {reasons}")
    undo = change_set_undo_record(locked, user=user, fixes=len(back))
    note = f"undo of change set {locked.pk}"
    fixes_record([fix_back(fix, user=user, source=source, note=note, change_set=undo) for fix in back])
    return UndoResult(change_set=undo, written=len(back), **counts)


def _latest_labels(fixes: list[ManualFix]) -> dict[tuple[int, int, str], str]:
    """The label of the latest fix in each scope of these fixes (the label the scope holds: a fix beats the rest)."""
    if not fixes:
        return {}
    scopes = {(f.advertiser_id, f.asset_id, f.task) for f in fixes}
    rows = (
        ManualFix.objects.filter(
            advertiser_id__in={a for a, _, _ in scopes},
            asset_id__in={s for _, s, _ in scopes},
            task__in={t for _, _, t in scopes},
        )
        .order_by("advertiser_id", "asset_id", "task", "-created_at", "-id")
        .values_list("advertiser_id", "asset_id", "task", "new_label")
    )
    latest: dict[tuple[int, int, str], str] = {}
    for advertiser_id, asset_id, task, label in rows:
        key = (advertiser_id, asset_id, task)
        if key in scopes:
            latest.setdefault(key, label)
    return latest


def _skipped_reasons(counts: dict[str, int]) -> str:
    """ "1 changed by someone since, 2 confirmations, which changed no label" (the reasons with a count)."""
    words = {
        "changed_since": lambda n: f"{n} changed by someone since",
        "confirmations": lambda n: f"{n} confirmation{_s(n)}, which changed no label",
        "no_label": lambda n: f"{n} with no earlier label",
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

"""Watching a promotion after it ships: for PROMOTION_WATCH_SECONDS after a promotion (days in production, minutes in
the demo), every human label of an image the new model tags is also a verdict on its predecessor, whose results stay
cached. So the two models are compared on the very same images: the images reviewers looked at since the promotion.

Per advertiser (and over all of them) the watch counts the human labels and how many each model got wrong (its
overturn rate, with a 95% Wilson interval). The two rates share their images, so the test is McNemar's: among the
images where exactly one model is right, `worse` are those only the new model got wrong and `better` those only its
predecessor got wrong. The new model does *clearly* worse when `worse` exceeds `better` by more than chance allows:
an exact one-sided binomial test at PROMOTION_WATCH_ALPHA, with at least PROMOTION_WATCH_MIN_DISAGREEMENTS such
images (a handful of disagreements proves nothing either way).

A clearly worse model gets the health flag `promotion_regressed` on its Promotion (`watch["flags"]`), once: staff
are emailed with the figures, and the Models screen shows them beside the rollback. The labels are the review
queue's and the grid's, so the images are biased toward those the new model was unsure of; both models are judged
on the same ones.

The same comparison runs per vehicle kind, where the active detector's contract names kinds (Detection.kind).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from catalog.models import Advertiser
from classifier.models import Classification, Detection, ModelHead, Promotion, ScopedHead
from classifier.training.metrics import wilson_interval

from ..accuracy import latest_human_fixes
from .staff_mail import staff_mail

logger = logging.getLogger(__name__)

FLAG = "promotion_regressed"


@dataclass
class Verdicts:
    """The human labels of one advertiser (or all) since the promotion, and each model's mistakes on them."""

    reviewed: int = 0
    new_wrong: int = 0
    old_wrong: int = 0
    worse: int = 0  # only the new model wrong
    better: int = 0  # only the predecessor wrong

    def add(self, *, new_right: bool, old_right: bool) -> None:
        self.reviewed += 1
        self.new_wrong += not new_right
        self.old_wrong += not old_right
        self.worse += old_right and not new_right
        self.better += new_right and not old_right

    @property
    def p_value(self) -> float:
        """One-sided exact binomial: the chance of `worse` or more of the disagreements if both models erred alike."""
        n = self.worse + self.better
        if not n:
            return 1.0
        return min(1.0, sum(math.comb(n, k) for k in range(self.worse, n + 1)) / 2**n)

    @property
    def clearly_worse(self) -> bool:
        enough = self.worse + self.better >= settings.PROMOTION_WATCH_MIN_DISAGREEMENTS
        return enough and self.worse > self.better and self.p_value < settings.PROMOTION_WATCH_ALPHA

    def as_dict(self) -> dict[str, Any]:
        def rate(wrong: int) -> dict[str, Any]:
            if not self.reviewed:
                return {"share": None, "interval": None}
            low, high = wilson_interval(wrong, self.reviewed)
            return {"share": round(wrong / self.reviewed, 4), "interval": [round(low, 4), round(high, 4)]}

        return {
            **asdict(self),
            "new_overturned": rate(self.new_wrong),
            "old_overturned": rate(self.old_wrong),
            "p_value": round(self.p_value, 4),
            "clearly_worse": self.clearly_worse,
        }


@dataclass
class Watch:
    promotion: Promotion
    until: Any
    overall: Verdicts = field(default_factory=Verdicts)
    advertisers: dict[str, Verdicts] = field(default_factory=dict)  # slug -> its verdicts
    kinds: dict[str, Verdicts] = field(default_factory=dict)  # vehicle kind (the active detector's) -> its verdicts

    @property
    def regressed(self) -> list[str]:
        """Where the new model does clearly worse: "all" (every advertiser together), each advertiser's slug, and
        each vehicle kind ("<kind> vehicles")."""
        out = ["all"] if self.overall.clearly_worse else []
        out += [slug for slug, verdicts in sorted(self.advertisers.items()) if verdicts.clearly_worse]
        return out + [f"{kind} vehicles" for kind, verdicts in sorted(self.kinds.items()) if verdicts.clearly_worse]

    def verdicts_of(self, where: str) -> Verdicts:
        if where == "all":
            return self.overall
        if where.endswith(" vehicles") and where.removesuffix(" vehicles") in self.kinds:
            return self.kinds[where.removesuffix(" vehicles")]
        return self.advertisers[where]

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked_at": timezone.now().isoformat(),
            "until": self.until.isoformat(),
            "overall": self.overall.as_dict(),
            "advertisers": {slug: verdicts.as_dict() for slug, verdicts in sorted(self.advertisers.items())},
            "kinds": {kind: verdicts.as_dict() for kind, verdicts in sorted(self.kinds.items())},
            "regressed": self.regressed,
        }


def watch_until(promotion: Promotion) -> Any:
    return promotion.created_at + timedelta(seconds=settings.PROMOTION_WATCH_SECONDS)


def promotion_watch(*, promotion: Promotion) -> Watch:
    """The comparison of the promotion's model with the one it replaced, on the human labels given since (of images
    the promotion concerns: its advertiser's, for a scoped head) of images both models classified. Two queries."""
    watch = Watch(promotion=promotion, until=watch_until(promotion))
    if promotion.from_version_id is None:
        return watch
    task = promotion.task

    def label_of(version_id: int) -> Subquery:
        results = Classification.objects.filter(
            asset_id=OuterRef("asset_id"), model_version_id=version_id, task=task, status=Classification.Status.OK
        )
        return Subquery(results.values("label")[:1])

    fixes = latest_human_fixes().filter(task=task, created_at__gte=promotion.created_at, created_at__lte=watch.until)
    if promotion.advertiser_id is not None:
        fixes = fixes.filter(advertiser_id=promotion.advertiser_id)
    detected = Detection.objects.of_active_detector().filter(asset_id=OuterRef("asset_id")).exclude(kind="")
    rows = (
        fixes.annotate(
            new=label_of(promotion.to_version_id),
            old=label_of(promotion.from_version_id),
            vehicle=Subquery(detected.values("kind")[:1]),
        )
        .filter(new__isnull=False, old__isnull=False)
        .values_list("advertiser_id", "new_label", "new", "old", "vehicle")
    )
    slugs = dict(Advertiser.objects.values_list("pk", "slug"))
    for advertiser_id, human, new, old, vehicle in rows:
        verdict = {"new_right": new == human, "old_right": old == human}
        watch.overall.add(**verdict)
        watch.advertisers.setdefault(slugs.get(advertiser_id, str(advertiser_id)), Verdicts()).add(**verdict)
        if vehicle:
            watch.kinds.setdefault(vehicle, Verdicts()).add(**verdict)
    return watch


def watched_promotions(now: Any = None) -> list[Promotion]:
    """The promotions still inside their watch and still standing (their model still serves what they switched)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.PROMOTION_WATCH_SECONDS)
    recent = Promotion.objects.filter(kind=Promotion.Kind.PROMOTE, created_at__gte=since, from_version__isnull=False)
    active = set(ModelHead.objects.filter(is_active=True).values_list("task", "model_version_id"))
    scoped = set(ScopedHead.objects.values_list("advertiser_id", "task", "model_version_id"))
    return [
        promotion
        for promotion in recent.select_related("to_version", "from_version", "advertiser").order_by("created_at")
        if (promotion.task, promotion.to_version_id) in active
        or (promotion.advertiser_id, promotion.task, promotion.to_version_id) in scoped
    ]


def promotions_watch(now: Any = None) -> list[Watch]:
    """Watches every promotion inside its window (the beat job "Watch promotions" and `manage.py watch_promotions`):
    records the figures on it, and the first time its model does clearly worse, the `promotion_regressed` flag and an
    email to staff. Idempotent: a promotion is flagged and notified once."""
    watches = []
    for promotion in watched_promotions(now):
        watch = promotion_watch(promotion=promotion)
        figures = watch.as_dict()
        flags = list((promotion.watch or {}).get("flags", []))
        newly = bool(watch.regressed) and not any(flag.get("code") == FLAG for flag in flags)
        if newly:
            flags.append({"code": FLAG, "message": regressed_message(watch), "at": figures["checked_at"]})
        promotion.watch = {**figures, "flags": flags}
        Promotion.objects.filter(pk=promotion.pk).update(watch=promotion.watch)
        if newly:
            Promotion.objects.filter(pk=promotion.pk, regressed_at__isnull=True).update(regressed_at=timezone.now())
            _notify(watch)
        watches.append(watch)
    return watches


def regressed_message(watch: Watch) -> str:
    promotion = watch.promotion
    was = promotion.from_version.name if promotion.from_version else "its predecessor"
    where = ", ".join("every advertiser" if slug == "all" else slug for slug in watch.regressed)
    worst = watch.verdicts_of(watch.regressed[0])
    return (
        f"{promotion.to_version.name} does clearly worse on {promotion.task} than {was}"
        f" ({where}): humans overturned {worst.new_wrong} of {worst.reviewed} of its tags against"
        f" {worst.old_wrong} for its predecessor on the same images (only it wrong on {worst.worse}, only the"
        f" predecessor on {worst.better}; p = {worst.p_value:.3f}): roll it back"
    )


def _notify(watch: Watch) -> int:
    promotion = watch.promotion
    url = settings.SITE_URL + reverse("reviews:staff-models", args=[promotion.task])
    subject = f"[imagetagger] {FLAG}: {promotion.to_version.name} ({promotion.task})"
    body = f"{regressed_message(watch)}.\n\nThe Models screen offers the rollback: {url}"
    logger.warning("promotion %s: %s", promotion.pk, subject)
    return staff_mail(subject, body)


def watch_rows(promotion: Promotion) -> list[tuple[str, dict[str, Any]]]:
    """The recorded figures as the Models screen lists them: every advertiser together first, then each."""
    watch = promotion.watch or {}
    if not watch:
        return []
    return [
        ("all advertisers", watch.get("overall", {})),
        *watch.get("advertisers", {}).items(),
        *((f"{kind} vehicles", row) for kind, row in watch.get("kinds", {}).items()),
    ]

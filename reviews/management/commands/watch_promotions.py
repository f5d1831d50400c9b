import json
from typing import Any

from django.core.management.base import CommandParser

from config.commands import BaseCommand
from reviews.services.watch import FLAG, promotions_watch, watch_rows


def _rate(figures: dict[str, Any]) -> str:
    if figures["share"] is None:
        return "-"
    low, high = figures["interval"]
    return f"{100 * figures['share']:.1f}% ({100 * low:.0f}-{100 * high:.0f})"


class Command(BaseCommand):
    help = (
        "Compares each promotion still inside its watch (PROMOTION_WATCH_SECONDS) with the model it replaced, on the "
        "human labels given since, per advertiser; flags a clearly worse one `promotion_regressed` and emails staff "
        "(what the beat job 'Watch promotions' does every 10 minutes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object per promotion.")

    def handle(self, *args: object, as_json: bool, **options: Any) -> None:
        watches = promotions_watch()
        if not watches:
            self.stdout.write("no promotion is being watched")
            return
        for watch in watches:
            promotion = watch.promotion
            figures = promotion.watch
            if as_json:
                self.stdout.write(json.dumps({"promotion": promotion.pk, "task": promotion.task, **figures}))
                continue
            scope = f" for {promotion.advertiser.slug}" if promotion.advertiser else ""
            was = promotion.from_version.name if promotion.from_version else "none"
            self.stdout.write(
                f"{promotion.task}{scope}: {promotion.to_version.name} (was {was}),"
                f" watched until {watch.until:%Y-%m-%d %H:%M}"
            )
            self.stdout.write(f"  {'':<20} {'labels':>6} {'new model overturned':>22} {'predecessor':>22} {'p':>6}")
            rows = watch_rows(promotion)
            for name, row in rows:
                self.stdout.write(
                    f"  {name[:20]:<20} {row['reviewed']:>6} {_rate(row['new_overturned']):>22}"
                    f" {_rate(row['old_overturned']):>22} {row['p_value']:>6.3f}"
                    + ("  clearly worse" if row["clearly_worse"] else "")
                )
            for flag in figures.get("flags", []):
                if flag.get("code") == FLAG:
                    self.stdout.write(f"  {FLAG}: {flag['message']}")

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from catalog.fetching import FetchError, SafeFetcher
from catalog.imaging import ImageRefused, inspect_image
from catalog.inventory import InventoryRefused
from catalog.sources import fetch_policy, source_read_url
from classifier.services.inference import active_models, decode_all, infer, load_models
from config.commands import BaseCommand
from reviews.model_tags import model_tags_in_effect

NO_INTENT = "No Shopping Intent"


class Command(BaseCommand):
    # In reviews/, not classifier/: its tags are the ones in effect by the one rule (reviews.effective), which
    # classifier never imports. A Placeholder has no color here either.
    help = (
        "Fetches a product page or sitemap, classifies its images and prints a report an SEO analyst would want: "
        "per image its intent and category, sensitivity, type and color as the tags in effect would say (a "
        "Placeholder has no color), and flags (no shopping intent, ambiguous)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--max-images", type=int, default=200)
        parser.add_argument(
            "--ambiguous-margin", type=float, default=0.2, help="Flag tags whose top-two margin is below this."
        )

    def handle(self, *args: object, url: str, json: bool, max_images: int, ambiguous_margin: float, **o: Any) -> None:
        active = active_models()
        if not active.heads:
            raise CommandError("no active model: register one with register_model --activate")
        loaded = load_models(active)
        with SafeFetcher(fetch_policy()) as fetcher:
            try:
                source = source_read_url(url, fetcher=fetcher)
            except (InventoryRefused, FetchError) as exc:
                raise CommandError(f"refused {url}: {exc}") from exc
            urls = list(dict.fromkeys(image for page in source.pages for image in page.images))[:max_images]
            datas, problems = [], {}
            for image_url in urls:
                try:
                    data = fetcher.fetch(image_url, expect_image=True).content
                    inspect_image(data)  # the same checks as a Run: pixel limit, format allowlist, truncation
                    datas.append(data)
                except (FetchError, ImageRefused) as exc:
                    datas.append(b"")
                    problems[image_url] = str(exc)
        results = infer(decode_all(datas, loaded), active, loaded)
        rows = []
        for image_url, result in zip(urls, results, strict=True):
            in_effect = model_tags_in_effect(result.results, result.errors)
            tags = {
                task: {"label": tag.label}
                | ({"confidence": round(tag.result.confidence, 3)} if tag.result else {})
                | {"source": tag.source}
                for task, tag in in_effect.items()
            }
            flags = []
            labels = {task: tag.label for task, tag in in_effect.items()}
            if labels.get("intent") == NO_INTENT:
                flags.append("no shopping intent")
            if any(tag.result.margin < ambiguous_margin for tag in in_effect.values() if tag.result):
                flags.append("ambiguous")
            if labels.get("sensitive") == "sensitive":
                flags.append("sensitive")
            if image_url in problems or result.errors:
                flags.append("failed")
            rows.append({"url": image_url, "tags": tags, "flags": flags,
                         "error": problems.get(image_url) or "; ".join(result.errors.values())})  # fmt: skip
        if json:
            self.stdout.write(_dumps({"url": url, "kind": str(source.kind), "images": rows, "errors": source.errors}))
            return
        self._table(url, rows)

    def _table(self, url: str, rows: list[dict[str, Any]]) -> None:
        write = self.stdout.write
        write(f"{url}: {len(rows)} images")
        header = f"{'#':>3}  {'intent':<42} {'conf':>5}  {'sensitive':<13} {'type':<11} {'color':<9} flags"
        write(header)
        write("-" * len(header))
        for n, row in enumerate(rows, 1):
            tags = row["tags"]

            def label(task: str, tags: dict[str, Any] = tags) -> str:
                if task not in tags:
                    return "-"
                # No label: "none" by the rule (a placeholder's color), "failed" when the model failed.
                return str(tags[task]["label"] or ("none" if tags[task]["source"] == "rule" else tags[task]["source"]))

            conf = f"{tags['intent']['confidence']:.2f}" if "confidence" in tags.get("intent", {}) else "-"
            flags = ", ".join(row["flags"]) or "ok"
            write(
                f"{n:>3}  {label('intent'):<42} {conf:>5}  {label('sensitive'):<13} {label('image_type'):<11} "
                f"{label('color'):<9} {flags}"
            )
            write(f"     {row['url']}" + (f"  ({row['error']})" if row["error"] else ""))
        no_intent = sum("no shopping intent" in row["flags"] for row in rows)
        ambiguous = sum("ambiguous" in row["flags"] for row in rows)
        failed = sum("failed" in row["flags"] for row in rows)
        write(f"\nno shopping intent: {no_intent}   ambiguous: {ambiguous}   failed: {failed}   of {len(rows)}")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
